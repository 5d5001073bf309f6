"""The kubectl plugin tools/kubectl-rwg without a cluster (CTest integration_kubectl_rwg).

A fake `kubectl` on PATH answers the plugin's queries from a JSON file (contexts, Services,
the control Deployment, Secrets), records every command line, and serves `port-forward` as a
listening loopback socket; a fake `rwgctl` records its arguments, its environment, the password
it reads and whether the forwarded port answers. Checked: kubectl's flags before the command
(--kubeconfig, --context, -n/--namespace in their forms) reach every kubectl call, the
namespace of the context is the default, --release picks among several releases, rwgctl's
arguments and exit code pass through, the login uses the Deployment's admin and the Secret's
password (never on a command line nor printed), the messages when no control Service is
found, when several releases are, when rwgctl is missing and when the port-forward fails, and
that the port-forward and the private directory are gone afterwards, Ctrl-C included. For
`kubectl rwg tma ...`: a second port-forward to the release's tma Service whose port rwgctl
gets as RWG_TMA_SERVER (none for other commands), both stopped afterwards, the message when the
release has no tma Service and when that port-forward fails; `kubectl rwg ott ...` the same with
the ott Service and RWG_OTT_SERVER.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
PLUGIN = os.path.join(ROOT, "tools", "kubectl-rwg")
PASSWORD = "s3cret-Admin-pw"
CA = "-----BEGIN CERTIFICATE-----\nfake internal CA\n-----END CERTIFICATE-----\n"

FAKE_KUBECTL = r'''
import json, os, socket, sys, time
args = sys.argv[1:]
world = json.load(open(os.environ["FAKE_WORLD"]))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"kubectl": args, "KUBECONFIG": os.environ.get("KUBECONFIG")}) + "\n")
def opt(name):
    return args[args.index(name) + 1] if name in args else None
context = opt("--context") or world["current-context"]
ns = opt("-n")
rest = [a for a in args if a not in ("--context", "-n", "--kubeconfig", opt("--context"),
                                      opt("-n"), opt("--kubeconfig"))]
if rest[:2] == ["config", "current-context"]:
    print(context); sys.exit(0)
if rest[:2] == ["config", "view"]:
    sys.stdout.write(world["contexts"].get(context, "")); sys.exit(0)
space = world["namespaces"].get(f"{context}/{ns}", {})
def match(release, sel, component="control"):
    return all(s in (f"app.kubernetes.io/instance={release}", "app.kubernetes.io/name=rwg",
                     f"app.kubernetes.io/component={component}") for s in sel.split(","))
if rest[:2] == ["get", "services"]:
    # Every release has a tma and an ott Service unless the namespace lists those that do
    # ("tma", "ott").
    for component, releases in (("control", space.get("releases", [])),
                                ("tma", space.get("tma", space.get("releases", []))),
                                ("ott", space.get("ott", space.get("releases", [])))):
        for release in releases:
            if match(release, opt("-l"), component):
                print(f"{release}-rwg-{component} {release}")
    sys.exit(0)
if rest[:2] == ["get", "service"]:
    sys.stdout.write({"tma": "50056", "ott": "50057"}.get(rest[2].rsplit("-", 1)[1], "50051"))
    sys.exit(0)
if rest[:2] == ["get", "deployments"]:
    r = [x for x in space.get("releases", []) if match(x, opt("-l"))]
    if not r:
        sys.stderr.write("error: array index out of bounds\n"); sys.exit(1)
    print(f"{r[0]}-ca\n{r[0]}-admin\n" + json.dumps(["--grpc-listen=0.0.0.0:50051",
                                                     "--admin-user=boss", "--log-level=info"]))
    sys.exit(0)
if rest[:2] == ["get", "secret"]:
    secret = space.get("secrets", {}).get(rest[2])
    if secret is None:
        sys.stderr.write(f'Error from server (NotFound): secrets "{rest[2]}" not found\n')
        sys.exit(1)
    key = opt("-o").split("{.data.")[1].rstrip("}").replace("\\.", ".")
    sys.stdout.write(secret[key]); sys.exit(0)
if rest[:1] == ["port-forward"]:
    # One pid a line: the plugin may run two port-forwards.
    with open(os.environ["FAKE_PF"], "a") as f:
        f.write(f"{os.getpid()}\n")
    fails = world.get("port-forward-fails")  # true: every one; a Service's name: that one
    if fails is True or fails == rest[-2]:
        sys.stderr.write("error: unable to forward port because pod is not running. "
                         "Current status=Pending\n")
        sys.exit(1)
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"port-forward": rest[-2], "port": s.getsockname()[1],
                            "pid": os.getpid()}) + "\n")
    print(f"Forwarding from 127.0.0.1:{s.getsockname()[1]} -> {rest[-1][1:]}", flush=True)
    while True:
        c, _ = s.accept(); c.sendall(b"pf"); c.close()
sys.stderr.write(f"fake kubectl: unexpected {args}\n"); sys.exit(99)
'''

FAKE_RWGCTL = r'''
import json, os, socket, sys, time
args = sys.argv[1:]
rec = {"rwgctl": args}
for k in ("RWG_SERVER", "RWG_TMA_SERVER", "RWG_OTT_SERVER", "RWG_CA_CERT", "RWG_TOKEN_FILE", "RWG_CONFIG_DIR",
          "RWG_INSECURE"):
    rec[k] = os.environ.get(k)
if os.environ.get("RWG_CA_CERT"):
    rec["ca"] = open(os.environ["RWG_CA_CERT"]).read()
    st = os.stat(os.path.dirname(os.environ["RWG_CA_CERT"]))
    rec["dir_mode"] = oct(st.st_mode & 0o777)
host, port = os.environ["RWG_SERVER"].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=5) as c:
    rec["forwarded"] = c.recv(2).decode()
if os.environ.get("RWG_TMA_SERVER"):
    host, port = os.environ["RWG_TMA_SERVER"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as c:
        rec["tma_forwarded"] = c.recv(2).decode()
if os.environ.get("RWG_OTT_SERVER"):
    host, port = os.environ["RWG_OTT_SERVER"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as c:
        rec["ott_forwarded"] = c.recv(2).decode()
token = os.environ["RWG_TOKEN_FILE"]
if "login" in args:
    rec["password"] = sys.stdin.read()
    ok = rec["password"].strip() == os.environ["FAKE_PASSWORD"]
    if ok:
        open(token, "w").write("tok\n")
elif "logout" in args:
    os.remove(token)
else:
    rec["token"] = open(token).read() if os.path.exists(token) else None
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(rec) + "\n")
if "login" in args and not ok:
    sys.stderr.write("rwgctl: UNAUTHENTICATED: bad credentials\n"); sys.exit(1)
if "hang" in args:
    open(os.environ["FAKE_LOG"] + ".hang", "w").close()
    time.sleep(60)
if "fail" in args:
    sys.stderr.write("rwgctl: NOT_FOUND: no such thing\n"); sys.exit(3)
print("1001 ok")
'''


def b64(s):
    return base64.b64encode(s.encode()).decode()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


class KubectlRwgTest(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="kubectl-rwg-test-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.bin)
        for name, text in (("kubectl", FAKE_KUBECTL), ("rwgctl", FAKE_RWGCTL)):
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write(f"#!{sys.executable}\n{text}")
            os.chmod(path, 0o755)
        self.scratch = os.path.join(self.tmp, "scratch")  # the plugin's TMPDIR
        os.makedirs(self.scratch)
        self.log = os.path.join(self.tmp, "log")
        self.pf = os.path.join(self.tmp, "pf.pid")
        self.world_file = os.path.join(self.tmp, "world.json")
        self.addCleanup(self.stop_port_forward)
        secrets = {"rwg-ca": {"ca.crt": b64(CA)}, "rwg-admin": {"admin-password": b64(PASSWORD)}}
        self.world = {
            "current-context": "ctx-a",
            "contexts": {"ctx-a": "", "ctx-b": "team"},
            "namespaces": {
                "ctx-a/default": {"releases": ["rwg"], "secrets": secrets},
                "ctx-b/team": {"releases": ["rwg"], "secrets": secrets},
                "ctx-a/two": {"releases": ["blue", "green"], "secrets": {
                    "green-ca": {"ca.crt": b64(CA)},
                    "green-admin": {"admin-password": b64(PASSWORD)}}},
                "ctx-a/nosecret": {"releases": ["rwg"], "secrets": {}},
                "ctx-a/notma": {"releases": ["rwg"], "tma": [], "secrets": secrets},
                "ctx-a/noott": {"releases": ["rwg"], "ott": [], "secrets": secrets},
            },
        }

    def run_plugin(self, *args, path=None, env=None, timeout=30):
        with open(self.world_file, "w") as f:
            json.dump(self.world, f)
        e = {"PATH": path or f"{self.bin}:/usr/bin:/bin", "HOME": self.tmp,
             "TMPDIR": self.scratch, "FAKE_WORLD": self.world_file, "FAKE_LOG": self.log,
             "FAKE_PF": self.pf, "FAKE_PASSWORD": PASSWORD}
        e.update(env or {})
        return subprocess.run([PLUGIN, *args], env=e, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def records(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def kubectl_calls(self):
        return [r["kubectl"] for r in self.records() if "kubectl" in r]

    def rwgctl_calls(self):
        return [r for r in self.records() if "rwgctl" in r]

    def port_forwards(self):
        """The port-forwards started (their pids), in order."""
        if not os.path.exists(self.pf):
            return []
        with open(self.pf) as f:
            return [int(line) for line in f if line.strip()]

    def forwarded(self):
        """The port-forwards that listened: {"port-forward": service, "port", "pid"}."""
        return [r for r in self.records() if "port-forward" in r]

    def stop_port_forward(self):
        """Fake port-forwards the plugin left: stopped, so that a failure leaves nothing."""
        for pid in self.port_forwards():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"port-forward" in f.read()
            except OSError:
                ours = False
            if ours and alive(pid):
                os.kill(pid, signal.SIGKILL)

    def assert_cleaned_up(self):
        self.assertEqual(os.listdir(self.scratch), [], "the private directory is left")
        for pid in self.port_forwards():
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(pid), "the port-forward is left running")

    def test_runs_rwgctl_through_the_port_forward(self):
        p = self.run_plugin("-o", "json", "device", "list", "--filter", "10")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1001 ok\n")
        self.assertNotIn(PASSWORD, p.stdout + p.stderr)
        login, cmd, logout = self.rwgctl_calls()
        self.assertEqual(login["rwgctl"], ["login", "--user", "boss", "--password-stdin"])
        self.assertEqual(login["password"].strip(), PASSWORD)
        self.assertEqual(cmd["rwgctl"], ["-o", "json", "device", "list", "--filter", "10"])
        self.assertEqual(cmd["token"], "tok\n")
        self.assertEqual(logout["rwgctl"][-1], "logout")
        for r in (login, cmd, logout):
            self.assertRegex(r["RWG_SERVER"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(r["forwarded"], "pf")
            self.assertEqual(r["ca"], CA)
            self.assertEqual(r["dir_mode"], "0o700")
            self.assertIsNone(r["RWG_INSECURE"])
        calls = self.kubectl_calls()
        for c in calls:
            self.assertNotIn(PASSWORD, " ".join(c))
            if c[:1] != ["config"]:
                self.assertEqual(c[:2], ["-n", "default"], c)
        pf = [c for c in calls if "port-forward" in c][0]
        self.assertEqual(pf[2:], ["port-forward", "--address", "127.0.0.1",
                                  "service/rwg-rwg-control", ":50051"])
        self.assertIn(["-n", "default", "get", "secret", "rwg-ca", "-o",
                       "jsonpath={.data.ca\\.crt}"], calls)
        self.assert_cleaned_up()

    def test_kubectl_flags_before_the_command(self):
        cfg = os.path.join(self.tmp, "other-kubeconfig")
        for flags in (["--context", "ctx-b", "-n", "team", "--kubeconfig", cfg],
                      ["--context=ctx-b", "--namespace=team", f"--kubeconfig={cfg}"],
                      ["--kubeconfig", cfg, "--namespace", "team", "--context", "ctx-b"],
                      ["--context", "ctx-b", "-nteam", "--kubeconfig", cfg]):
            os.path.exists(self.log) and os.remove(self.log)
            p = self.run_plugin(*flags, "call", "list")
            self.assertEqual(p.returncode, 0, (flags, p.stderr))
            self.assertEqual(self.rwgctl_calls()[1]["rwgctl"], ["call", "list"])
            for c in self.kubectl_calls():
                self.assertEqual(sorted(c[:4]), sorted(["--context", "ctx-b", "--kubeconfig", cfg]),
                                 c)
                if c[4] != "config":
                    self.assertEqual(c[4:6], ["-n", "team"], c)
            self.assert_cleaned_up()

    def test_namespace_of_the_context_and_kubeconfig_env(self):
        p = self.run_plugin("--context", "ctx-b", "device", "list",
                            env={"KUBECONFIG": "/nowhere/config"})
        self.assertEqual(p.returncode, 0, p.stderr)
        calls = self.records()
        self.assertIn(["--context", "ctx-b", "config", "view", "--minify", "-o",
                       "jsonpath={..namespace}"], self.kubectl_calls())
        self.assertTrue(all(r["KUBECONFIG"] == "/nowhere/config" for r in calls
                            if "kubectl" in r))
        self.assertIn(["--context", "ctx-b", "-n", "team", "get", "secret", "rwg-admin", "-o",
                       "jsonpath={.data.admin-password}"], self.kubectl_calls())

    def test_no_control_service(self):
        p = self.run_plugin("-n", "elsewhere", "device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no rwg control Service in namespace elsewhere of context ctx-a",
                      p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        self.assertFalse(any("port-forward" in c for c in self.kubectl_calls()))
        self.assert_cleaned_up()
        p = self.run_plugin("--release", "nope", "device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no rwg control Service of release nope in namespace default of context "
                      "ctx-a", p.stderr)

    def test_several_releases_need_release(self):
        p = self.run_plugin("-n", "two", "device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("several rwg releases in namespace two of context ctx-a (blue, green): "
                      "choose one with --release NAME", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        p = self.run_plugin("-n", "two", "--release", "green", "device", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(["-n", "two", "port-forward", "--address", "127.0.0.1",
                       "service/green-rwg-control", ":50051"], self.kubectl_calls())
        self.assertIn(["-n", "two", "get", "secret", "green-ca", "-o",
                       "jsonpath={.data.ca\\.crt}"], self.kubectl_calls())
        self.assert_cleaned_up()

    def test_rwgctl_missing(self):
        bare = os.path.join(self.tmp, "bare")
        os.makedirs(bare)
        os.symlink(os.path.join(self.bin, "kubectl"), os.path.join(bare, "kubectl"))
        p = self.run_plugin("device", "list", path=f"{bare}:/usr/bin:/bin")
        self.assertEqual(p.returncode, 1)
        self.assertIn("rwgctl is not on PATH", p.stderr)
        self.assertIn("build/bin", p.stderr)
        self.assertEqual(self.kubectl_calls(), [])
        # The rwgctl next to the plugin (build/bin holds both).
        beside = os.path.join(self.tmp, "beside")
        os.makedirs(beside)
        shutil.copy(PLUGIN, os.path.join(beside, "kubectl-rwg"))
        shutil.copy(os.path.join(self.bin, "rwgctl"), os.path.join(beside, "rwgctl"))
        p = subprocess.run([os.path.join(beside, "kubectl-rwg"), "device", "list"], text=True,
                           env={"PATH": f"{bare}:/usr/bin:/bin", "HOME": self.tmp,
                                "TMPDIR": self.scratch, "FAKE_WORLD": self.world_file,
                                "FAKE_LOG": self.log, "FAKE_PF": self.pf,
                                "FAKE_PASSWORD": PASSWORD},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1001 ok\n")
        # RWGCTL names it instead.
        p = self.run_plugin("device", "list", path=f"{bare}:/usr/bin:/bin",
                            env={"RWGCTL": os.path.join(self.bin, "rwgctl")})
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_port_forward_fails(self):
        self.world["port-forward-fails"] = True
        p = self.run_plugin("device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("kubectl port-forward to service/rwg-rwg-control:50051 in namespace "
                      "default of context ctx-a failed: error: unable to forward port because "
                      "pod is not running", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        self.assert_cleaned_up()

    def test_tma_opens_a_second_port_forward(self):
        p = self.run_plugin("tma", "server", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1001 ok\n")
        control, tma = self.forwarded()
        self.assertEqual(control["port-forward"], "service/rwg-rwg-control")
        self.assertEqual(tma["port-forward"], "service/rwg-rwg-tma")
        self.assertNotEqual(control["port"], tma["port"])
        login, cmd, logout = self.rwgctl_calls()
        self.assertEqual(cmd["rwgctl"], ["tma", "server", "list"])
        self.assertEqual(cmd["token"], "tok\n")
        self.assertEqual(logout["rwgctl"][-1], "logout")
        for r in (login, cmd, logout):
            self.assertEqual(r["RWG_SERVER"], f"127.0.0.1:{control['port']}")
            self.assertEqual(r["RWG_TMA_SERVER"], f"127.0.0.1:{tma['port']}")
            self.assertEqual(r["forwarded"], "pf")
            self.assertEqual(r["tma_forwarded"], "pf")
            self.assertEqual(r["ca"], CA)
        calls = self.kubectl_calls()
        self.assertIn(["-n", "default", "get", "services", "-l",
                       "app.kubernetes.io/name=rwg,app.kubernetes.io/component=tma,"
                       "app.kubernetes.io/instance=rwg", "-o",
                       "jsonpath={range .items[*]}{.metadata.name}{\" \"}"
                       "{.metadata.labels.app\\.kubernetes\\.io/instance}{\"\\n\"}{end}"],
                      calls)
        pfs = [c for c in calls if "port-forward" in c]
        self.assertEqual(pfs, [
            ["-n", "default", "port-forward", "--address", "127.0.0.1",
             "service/rwg-rwg-control", ":50051"],
            ["-n", "default", "port-forward", "--address", "127.0.0.1",
             "service/rwg-rwg-tma", ":50056"]])
        self.assertEqual(self.port_forwards(), [control["pid"], tma["pid"]])
        self.assert_cleaned_up()
        # With several releases, the chosen one's tma; rwgctl's options before `tma`.
        os.remove(self.log)
        p = self.run_plugin("-n", "two", "--release", "green", "-o", "json", "tma", "server",
                            "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([r["port-forward"] for r in self.forwarded()],
                         ["service/green-rwg-control", "service/green-rwg-tma"])
        self.assertEqual(self.rwgctl_calls()[1]["rwgctl"], ["-o", "json", "tma", "server",
                                                            "list"])
        self.assertEqual(self.rwgctl_calls()[1]["RWG_TMA_SERVER"],
                         f"127.0.0.1:{self.forwarded()[1]['port']}")
        self.assert_cleaned_up()

    def test_tma_not_enabled(self):
        p = self.run_plugin("-n", "notma", "tma", "server", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("tma is not enabled in release rwg (tma.enabled)", p.stderr)
        self.assertIn("namespace notma of context ctx-a", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        self.assertFalse(any("service/rwg-rwg-tma" in c for c in self.kubectl_calls()))
        self.assert_cleaned_up()
        # Other commands do not need it.
        p = self.run_plugin("-n", "notma", "device", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_cleaned_up()

    def test_ott_opens_a_second_port_forward(self):
        p = self.run_plugin("ott", "domain", "list", env={"RWG_TMA_SERVER": "192.0.2.1:50056"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1001 ok\n")
        control, ott = self.forwarded()
        self.assertEqual(control["port-forward"], "service/rwg-rwg-control")
        self.assertEqual(ott["port-forward"], "service/rwg-rwg-ott")
        login, cmd, logout = self.rwgctl_calls()
        self.assertEqual(cmd["rwgctl"], ["ott", "domain", "list"])
        self.assertEqual(cmd["token"], "tok\n")
        for r in (login, cmd, logout):
            self.assertEqual(r["RWG_SERVER"], f"127.0.0.1:{control['port']}")
            self.assertEqual(r["RWG_OTT_SERVER"], f"127.0.0.1:{ott['port']}")
            self.assertIsNone(r["RWG_TMA_SERVER"])
            self.assertEqual(r["ott_forwarded"], "pf")
        calls = self.kubectl_calls()
        self.assertIn(["-n", "default", "get", "services", "-l",
                       "app.kubernetes.io/name=rwg,app.kubernetes.io/component=ott,"
                       "app.kubernetes.io/instance=rwg", "-o",
                       "jsonpath={range .items[*]}{.metadata.name}{\" \"}"
                       "{.metadata.labels.app\\.kubernetes\\.io/instance}{\"\\n\"}{end}"],
                      calls)
        self.assertIn(["-n", "default", "port-forward", "--address", "127.0.0.1",
                       "service/rwg-rwg-ott", ":50057"], calls)
        self.assertFalse(any("component=tma" in " ".join(c) for c in calls), calls)
        self.assertEqual(self.port_forwards(), [control["pid"], ott["pid"]])
        self.assert_cleaned_up()

    def test_ott_not_enabled(self):
        p = self.run_plugin("-n", "noott", "ott", "domain", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("ott is not enabled in release rwg (ott.enabled)", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        self.assertFalse(any("port-forward" in c for c in self.kubectl_calls()))
        self.assert_cleaned_up()
        self.world["port-forward-fails"] = "service/rwg-rwg-ott"
        p = self.run_plugin("ott", "account", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("kubectl port-forward to service/rwg-rwg-ott:50057 in namespace "
                      "default of context ctx-a failed", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        self.assert_cleaned_up()

    def test_other_commands_open_one_port_forward(self):
        p = self.run_plugin("device", "list", env={"RWG_TMA_SERVER": "192.0.2.1:50056",
                                                   "RWG_OTT_SERVER": "192.0.2.1:50057"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([r["port-forward"] for r in self.forwarded()],
                         ["service/rwg-rwg-control"])
        self.assertEqual(len(self.port_forwards()), 1)
        calls = self.kubectl_calls()
        self.assertFalse(any("component=tma" in " ".join(c) for c in calls), calls)
        for r in self.rwgctl_calls():
            self.assertIsNone(r["RWG_TMA_SERVER"])
            self.assertIsNone(r["RWG_OTT_SERVER"])
        self.assert_cleaned_up()
        # `tma` as an argument, not the command, is not the tma command.
        os.remove(self.log)
        p = self.run_plugin("device", "get", "tma")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(self.forwarded()), 1)
        self.assert_cleaned_up()

    def test_tma_port_forward_fails(self):
        self.world["port-forward-fails"] = "service/rwg-rwg-tma"
        p = self.run_plugin("tma", "server", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("kubectl port-forward to service/rwg-rwg-tma:50056 in namespace "
                      "default of context ctx-a failed: error: unable to forward port because "
                      "pod is not running", p.stderr)
        self.assertEqual(self.rwgctl_calls(), [])
        # The first one was running: stopped.
        (control,) = self.forwarded()
        self.assertEqual(control["port-forward"], "service/rwg-rwg-control")
        self.assertEqual(len(self.port_forwards()), 2)
        self.assert_cleaned_up()
        self.assertFalse(alive(control["pid"]))

    def test_exit_code_passes_through(self):
        p = self.run_plugin("device", "get", "fail")
        self.assertEqual(p.returncode, 3)
        self.assertIn("rwgctl: NOT_FOUND: no such thing", p.stderr)
        self.assertEqual(self.rwgctl_calls()[-1]["rwgctl"][-1], "logout")
        self.assert_cleaned_up()

    def test_bad_password_and_missing_secret(self):
        p = self.run_plugin("device", "list", env={"FAKE_PASSWORD": "changed"})
        self.assertEqual(p.returncode, 1)
        self.assertIn("login as boss with the password of Secret rwg-admin (key admin-password) "
                      "in namespace default of context ctx-a failed", p.stderr)
        self.assertIn("RWG_USER and RWG_PASSWORD", p.stderr)
        self.assertNotIn(PASSWORD, p.stderr)
        self.assertEqual(len(self.rwgctl_calls()), 1)
        self.assert_cleaned_up()
        # RWG_USER/RWG_PASSWORD instead of the Secret.
        os.remove(self.log)
        p = self.run_plugin("device", "list", env={"FAKE_PASSWORD": "changed",
                                                   "RWG_USER": "ops", "RWG_PASSWORD": "changed"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.rwgctl_calls()[0]["rwgctl"], ["login", "--user", "ops",
                                                            "--password-stdin"])
        self.assertFalse(any("admin-password" in " ".join(c) for c in self.kubectl_calls()))
        p = self.run_plugin("-n", "nosecret", "device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot read Secret rwg-ca (the internal CA) in namespace nosecret",
                      p.stderr)
        self.assert_cleaned_up()

    def test_usage_errors(self):
        p = self.run_plugin()
        self.assertEqual(p.returncode, 2)
        self.assertIn("Usage: kubectl rwg", p.stderr)
        p = self.run_plugin("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--release NAME", p.stdout)
        for bad in (["--server", "x:1"], ["--insecure"], ["--ca-cert=/x"], ["-s", "x:1"],
                    ["--tma-server", "x:1"], ["--tma-server=x:1"], ["--ott-server", "x:1"],
                    ["--ott-server=x:1"]):
            p = self.run_plugin(*bad, "device", "list")
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("the plugin sets the server", p.stderr)
        p = self.run_plugin("-n")
        self.assertEqual(p.returncode, 2)
        self.assertIn("-n needs a value", p.stderr)
        p = self.run_plugin("login")
        self.assertEqual(p.returncode, 2)
        self.assertIn("the plugin logs in for each command", p.stderr)
        self.assertEqual(self.kubectl_calls(), [])

    def test_ctrl_c_cleans_up(self):
        with open(self.world_file, "w") as f:
            json.dump(self.world, f)
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": self.tmp, "TMPDIR": self.scratch,
               "FAKE_WORLD": self.world_file, "FAKE_LOG": self.log, "FAKE_PF": self.pf,
               "FAKE_PASSWORD": PASSWORD}
        for command in (["hang"], ["tma", "hang"]):  # one port-forward, then two
            if os.path.exists(self.log + ".hang"):
                os.remove(self.log + ".hang")
            p = subprocess.Popen([PLUGIN, *command], env=env, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 20
            while not os.path.exists(self.log + ".hang") and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(self.log + ".hang"))
            self.assertTrue(os.listdir(self.scratch))
            os.killpg(p.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
            p.communicate(timeout=20)
            self.assertEqual(p.returncode, 130)
            self.assert_cleaned_up()
        self.assertEqual(len(self.port_forwards()), 3)


if __name__ == "__main__":
    unittest.main()
