"""Integration: the Helm chart helm/rwg installed on the single-node cluster of tools/k8s.

CTest's integration_k8s_chart (label k8s, run alone, 2400 s: a cold run builds Kubernetes
first), which sets RWG_K8S_TEST=1; by hand, as root, from tests/integration, after
./tools/rwg build, with no cluster running:

    RWG_K8S_TEST=1 python3 -m unittest -v test_k8s_chart

Without RWG_K8S_TEST=1 it is skipped; with it, whatever is missing (root, the binaries,
kamailio, baresip, redis) fails it.

It starts a cluster of its own (`./tools/rwg k8s up` with a temporary RWG_STATE_DIR), builds
and imports the images (`./tools/rwg images`: the services, Redis, the test image), runs
Kamailio on the node's address as the iPBX, then:
- `helm install --wait` (NodePort exposure: SIP/TLS and HTTPS on node ports, two relay
  instances with disjoint port pools), a device added with the host's rwgctl through
  `kubectl port-forward` (what NOTES.txt says); `kubectl rwg` (tools/kubectl-rwg on PATH) adding,
  showing and deleting a device in the release's namespace (-n, then the context's), rwgctl's
  exit code through it, the message for a namespace without rwg, no port-forward left; a sync
  consumer added with `kubectl rwg sync consumer add` (its id and secret shown, then listed);
- the sync pod ready, its API answering an unsigned request from the host through its Service
  (node port, its generated certificate verified) with 401 and `WWW-Authenticate: OAuth`;
- the tma pod ready, answering the host's `rwgctl health` (SERVING) through a port-forward to
  its Service (the internal certificate verified);
- `helm test`: every service's health (sync's too), a provisioning fetch through the hash, a
  REGISTER through the edge (registered at the iPBX), the sync API's 401 through its Service;
- from the host, as a phone: the file over HTTPS on the node's address through the hash (a
  wrong hash: 404), a REGISTER over TLS through the node port (200, the iPBX has the ICP-side
  registration), and a request from the iPBX reaching the phone with no pod address in it;
- calls with audio: two remote phones (baresip on the host: 1002 plays 600 Hz, 1003 1400 Hz,
  registered over TLS through the node port, SRTP required) and an office phone registered
  straight to the iPBX (1000 Hz, plain RTP). 1002 calls 1003 (out to the iPBX and back in: two
  calls through rwg, two relay sessions), the office calls 1002. Each phone hears the other's
  tone and not its own, the remote phones' media goes to the node's address and a relay port
  (no pod address in what they were sent), and after the hang-up no call is left in
  `rwgctl call list` and no session on either relay (their metrics, on the node's address);
- a relay pod deleted during a call (the one holding the call's sessions): its StatefulSet
  starts it again under the same name, it restores the sessions from Redis (`session
  restored`), media flows through it again on both legs both ways, the call goes on, and
  each phone hears the other in what it received after the pod was back;
- the sip-edge pod holding 1002 deleted: the iPBX holds both phones' registrations
  throughout (sampled every half second), the phones register again through the instances
  left or started, and both calls work again;
- `helm upgrade` changing values (licences, the edge's log level): the configuration follows,
  the sync certificate is kept, both sip-edge pods are replaced, the iPBX holds the registrations throughout, the phones
  register again through the new pods and call each other; the raw phone registers again;
- Redis backup and restore as docs/kubernetes.md says (a snapshot through a port-forward, the
  Redis pod deleted, the snapshot piped back): the admin, the device and the hash key are back;
- `helm uninstall`: nothing of the release is left in the namespace;
then `down --purge`. Timings are printed.

test_redis_sentinel, on a cluster of its own: the release installed with redis.sentinel (two
Redis pods, three sentinels; sync and tma off, one pod per service), a phone registered, the
master's pod deleted: the sentinels promote the replica, sip-edge follows it (its log), the
binding and the device are still there, the phone registers again, and the deleted pod comes
back as a replica of the new master (its init step asked the sentinels).
"""
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import wave

import rwgtest
import sipclient
from test_calls import TONE_A, TONE_B, Baresip, goertzel_power

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
RWG = os.path.join(ROOT, "tools", "rwg")
CHART = os.path.join(ROOT, "helm", "rwg")
# CTest gives the binaries' directory (RWG_BIN_DIR); tools/k8s/images takes the build directory.
BUILD = os.environ.get("RWG_BUILD_DIR") or (
    os.path.dirname(os.path.abspath(os.environ["RWG_BIN_DIR"])) if os.environ.get("RWG_BIN_DIR")
    else os.path.join(ROOT, "build"))
NS = "rwg"
SIP_PORT, HTTPS_PORT, SYNC_PORT = 30561, 30445, 30843
RELAY_METRICS = 9500  # mediaRelay.metricsPort: instance i on the node's address, port 9500 + i
OFFICE, OFFICE_PASSWORD = "2000", "office-2000"
TONE_O = 1000.0  # what the office phone plays
# The phones register for 60 s (the SIP edge's shortest) and refresh before it ends: a phone
# whose instance went away is registered again through another within a minute.
REGINT = 60


def run(*args, env=None, timeout=120, check=True, stdin=None):
    p = subprocess.run(args, env=env, timeout=timeout, text=True, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-4000:]}")
    return p.stdout


def rt_group_scheduling():
    """Whether this kernel keeps real-time scheduling from tasks of cgroups that were given no
    real-time budget (CONFIG_RT_GROUP_SCHED with throttling on), as containers are."""
    with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
        throttled = int(f.read()) >= 0
    return throttled and os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us")


def tone_windows(path, freq, step=0.5):
    """Per `step` seconds of a recording: whether `freq` is what is heard there (loud, most of
    its power at that frequency)."""
    with wave.open(path, "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)[::channels]
    n = int(rate * step)
    windows = (samples[i:i + n] for i in range(0, len(samples) - n + 1, n))
    return [max(map(abs, w)) > 1000 and goertzel_power(w, rate, freq) > 0.5 for w in windows]


@unittest.skipUnless(os.environ.get("RWG_K8S_TEST") == "1",
                     "RWG_K8S_TEST=1 (CTest sets it): builds Kubernetes when it is not cached")
class K8sChartTest(unittest.TestCase):

    def setUp(self):
        # Asked for (CTest sets RWG_K8S_TEST): whatever is missing fails the test, never skips it.
        self.assertEqual(os.geteuid(), 0, "the cluster needs root")
        missing = [b for b in ("control", "sip-edge", "media-relay", "provisioning", "sync",
                               "tma", "rwgctl")
                   if not os.access(os.path.join(BUILD, "bin", b), os.X_OK)]
        self.assertEqual(missing, [], f"not built in {BUILD} (./tools/rwg build)")
        for tool in ("kamailio", "kamcmd", "baresip", "redis-server", "redis-cli"):
            self.assertTrue(shutil.which(tool), f"{tool} not installed (./tools/rwg deps)")
        self.timings = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-k8s-chart-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("RWG_") or k in ("RWG_K8S_CACHE", "RWG_BUILD_DIR")}
        self.env["RWG_STATE_DIR"] = os.path.join(self.tmp, "state")
        self.diagnosis = ""
        self.addCleanup(self.report)
        self.addCleanup(self.down)
        self.addCleanup(self.diagnose)
        self.timed("k8s up", RWG, "k8s", "up", timeout=3600)
        self.timed("images", RWG, "images", timeout=900)
        self.node_ip = self.kubectl("get", "nodes", "-o",
                                    "jsonpath={.items[0].status.addresses[?(@.type=="
                                    "\"InternalIP\")].address}").strip()
        self.assertRegex(self.node_ip, r"^\d+\.\d+\.\d+\.\d+$")
        kam_dir = os.path.join(self.tmp, "kamailio")
        os.makedirs(kam_dir)
        self.ipbx = rwgtest.Kamailio(kam_dir, self.node_ip, {
            "21001": "icp-1001", "21002": "icp-1002", "21003": "icp-1003",
            OFFICE: OFFICE_PASSWORD}).start()
        self.addCleanup(self.ipbx.stop)

    def timed(self, what, *args, timeout=600):
        t = time.monotonic()
        out = run(*args, env=self.env, timeout=timeout)
        self.timings[what] = time.monotonic() - t
        return out

    def report(self):
        print("\ntimings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        if self.diagnosis:
            print(self.diagnosis, flush=True)

    def diagnose(self):
        """After a failure, before the cluster goes: what the node, the pods and the runtime
        say, short enough to be read at the end of a CI log (printed last, by report)."""
        # (Inside a cleanup unittest's outcome says success; the result holds what failed.)
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None or not any(t is self for t, _ in result.failures + result.errors):
            return
        state = os.path.join(self.env["RWG_STATE_DIR"], "k8s")
        out = ["", "=== cluster state at the failure"]

        def sh(title, *args, lines=25):
            try:
                p = subprocess.run(args, env=self.env, timeout=60, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                text = p.stdout
            except (OSError, subprocess.SubprocessError) as e:
                text = f"({e})"
            tail = [line[:300] for line in text.splitlines()[-lines:]]
            out.append(f"--- {title}")
            out.extend(tail)

        k = (RWG, "k8s", "kubectl")
        sh("node", *k, "get", "node", "-o", "jsonpath={range .items[*]}{.metadata.name} "
           "taints={.spec.taints} {range .status.conditions[*]}{.type}={.status} {end}{end}")
        sh("pods", *k, "get", "pods", "-A", "-o", "wide")
        sh("events (newest last)", *k, "get", "events", "-A", "--sort-by=.lastTimestamp",
           lines=30)
        pods = run(*k, "get", "pods", "-n", NS, "-o", "jsonpath={range .items[*]}"
                   "{.metadata.name} {.status.containerStatuses[*].restartCount} "
                   "{.status.containerStatuses[*].ready}{\"\\n\"}{end}",
                   env=self.env, check=False)
        # The pods not ready, those restarted first (Redis down makes every service not ready;
        # the restarted pod is the cause, the others follow).
        unready = []
        for line in pods.splitlines():
            name, *fields = line.split()
            restarts = sum(int(f) for f in fields if f.isdigit())
            if name and (not fields or "false" in fields):
                unready.append((-restarts, name))
        for restarts, name in sorted(unready)[:2]:
            sh(f"describe {name} (events)", *k, "-n", NS, "describe", "pod", name, lines=12)
            sh(f"logs {name}", *k, "-n", NS, "logs", name, "--all-containers", "--tail=10",
               lines=10)
            if restarts:
                sh(f"logs {name}, before its restart", *k, "-n", NS, "logs", name,
                   "--all-containers", "--previous", "--tail=10", lines=10)
                sh(f"{name}: its address and last state", *k, "-n", NS, "get", "pod", name,
                   "-o", "jsonpath={.status.podIP} {.status.containerStatuses[*].lastState}",
                   lines=5)
                ip = run(*k, "-n", NS, "get", "pod", name, "-o", "jsonpath={.status.podIP}",
                         env=self.env, check=False).strip()
                if ip:
                    sh(f"{name}: the route to it and the neighbour", "sh", "-c",
                       'ip route get "$0"; ip neigh show "$0"; bridge link', ip, lines=12)
        for log in ("containerd", "kubelet"):
            sh(f"{log}.log errors", "sh", "-c", "grep -iE 'level=error|^E[0-9]{4}' \"$0\" "
               "| tail -10", os.path.join(state, "log", f"{log}.log"), lines=10)
        sh("addresses and routes", "sh", "-c", "ip -4 -br addr; ip -4 route", lines=20)
        sh("disk", "df", "-h", self.tmp, "/var", lines=4)
        sh("mounts", "findmnt", "-T", self.tmp, lines=3)
        self.diagnosis = "\n".join(out)

    def down(self):
        run(RWG, "k8s", "down", "--purge", env=self.env, timeout=300, check=False)

    def kubectl(self, *args, timeout=120, check=True, stdin=None):
        return run(RWG, "k8s", "kubectl", *args, env=self.env, timeout=timeout, check=check,
                   stdin=stdin)

    def helm(self, *args, timeout=600):
        return run(RWG, "k8s", "helm", *args, env=self.env, timeout=timeout)

    def secret(self, name, key):
        import base64
        data = self.kubectl("-n", NS, "get", "secret", name, "-o", "json")
        return base64.b64decode(json.loads(data)["data"][key]).decode()

    def save_cas(self):
        """The release's internal and public CAs, as NOTES.txt tells an admin to take them."""
        self.internal_ca = os.path.join(self.tmp, "internal-ca.pem")
        with open(self.internal_ca, "w") as f:
            f.write(self.secret("rwg-tls-internal", "ca.crt"))
        self.public_ca = os.path.join(self.tmp, "public-ca.pem")
        with open(self.public_ca, "w") as f:
            f.write(self.secret("rwg-tls-public", "ca.crt"))

    def rwgctl_env(self, port):
        return dict(self.env, RWG_SERVER=f"localhost:{port}", RWG_CA_CERT=self.internal_ca,
                    RWG_TOKEN_FILE=os.path.join(self.tmp, "token"),
                    RWG_PASSWORD=self.secret("rwg-secrets", "admin-password"))

    def rwgctl(self, port, *args):
        return run(os.path.join(BUILD, "bin", "rwgctl"), *args, env=self.rwgctl_env(port),
                   timeout=60)

    def values(self, **extra):
        v = {
            "publicName": self.node_ip,
            "publicAddress": self.node_ip,
            "icp": {"host": self.node_ip, "sipPort": self.ipbx.port, "sipTransports": "tcp"},
            "licences": 10,
            "expose": {"type": "NodePort"},
            "ports": {"sipTls": SIP_PORT, "https": HTTPS_PORT},
            "tls": {"public": {"dnsNames": ["localhost"]}},
            "mediaRelay": {"instances": 2, "portMin": 21000, "portMax": 21999,
                           "realtime": True, "workers": 2},
            "provisioning": {"files": {"aastra.cfg": f"sip proxy ip: {self.node_ip}\n"}},
            "tests": {"register": {"user": "1001", "password": "set-1001"}},
            "sync": {"service": {"nodePort": SYNC_PORT}},
        }
        v.update(extra)
        path = os.path.join(self.tmp, "values.json")
        with open(path, "w") as f:
            json.dump(v, f)
        return path

    def port_forward(self, service="rwg-control", port=50051, kind="svc"):
        p = subprocess.Popen([RWG, "k8s", "kubectl", "-n", NS, "port-forward", f"{kind}/{service}",
                              f":{port}"], env=self.env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.terminate(), p.wait(10), p.stdout.close()))
        line = p.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        self.assertTrue(m, line)
        return int(m.group(1))

    def kubectl_plugin(self):
        """`kubectl rwg` (tools/kubectl-rwg on PATH, found by the cluster's kubectl as a
        plugin): by itself the Service, the Secrets, the port-forward, the login."""
        t = time.monotonic()
        exports = dict(re.findall(r"^export (\w+)=(.*)$", run(RWG, "k8s", "env", env=self.env),
                                  re.M))
        client = exports["PATH"].split(":")[0]
        plugins = os.path.join(self.tmp, "plugins")
        scratch = os.path.join(self.tmp, "plugin-tmp")
        os.makedirs(plugins)
        os.makedirs(scratch)
        os.symlink(os.path.join(ROOT, "tools", "kubectl-rwg"), os.path.join(plugins, "kubectl-rwg"))
        env = {k: v for k, v in self.env.items() if not k.startswith("RWG_")}
        env.update(KUBECONFIG=exports["KUBECONFIG"], TMPDIR=scratch,
                   PATH=":".join([plugins, os.path.join(BUILD, "bin"), client, os.environ["PATH"]]))
        kubectl = os.path.join(client, "kubectl")

        def plugin(*args, env=env):
            return subprocess.run([kubectl, "rwg", *args], env=env, text=True, timeout=60,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        p = plugin("-n", NS, "device", "add", "--set-username", "1002", "--set-password",
                   "set-1002", "--icp-username", "21002", "--icp-password", "icp-1002")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = plugin("-n", NS, "device", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("1002", p.stdout)
        self.assertIn("1001", p.stdout)
        # The namespace of the kubeconfig's context when no -n is given, and -o json.
        own = os.path.join(self.tmp, "kubeconfig-rwg")
        with open(exports["KUBECONFIG"]) as src, open(own, "w") as dst:
            dst.write(src.read())
        run(kubectl, "--kubeconfig", own, "config", "set-context", "--current", f"--namespace={NS}")
        p = plugin("-o", "json", "device", "get", "1002", env=dict(env, KUBECONFIG=own))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["icp_username"], "21002")
        # rwgctl's exit code and message come through; the device goes.
        p = plugin("-n", NS, "device", "get", "9999")
        self.assertEqual(p.returncode, 1)
        self.assertIn("NOT_FOUND", p.stderr)
        p = plugin("-n", NS, "device", "delete", "1002")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("1002", plugin("-n", NS, "device", "list").stdout)
        # A sync consumer for the iPBX, as NOTES.txt says: its secret shown once.
        p = plugin("-n", NS, "-o", "json", "sync", "consumer", "add", "mivoice", "--id",
                   "MiVOAppSuite")
        self.assertEqual(p.returncode, 0, p.stderr)
        added = json.loads(p.stdout)
        self.assertEqual(added["consumer"]["id"], "MiVOAppSuite")
        self.assertEqual(len(added["secret"]), 40)
        p = plugin("-n", NS, "sync", "consumer", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("MiVOAppSuite", p.stdout)
        self.assertNotIn(added["secret"], p.stdout)
        # A namespace without rwg: the message says where it looked.
        context = run(kubectl, "config", "current-context", env=env).strip()
        p = plugin("-n", "kube-system", "device", "list")
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"no rwg control Service in namespace kube-system of context {context}",
                      p.stderr)
        # Nothing left behind: no port-forward of the plugin's, no private directory.
        left = []
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if b"port-forward" in cmd and b"service/rwg-control" in cmd:
                left.append(pid)
        self.assertEqual(left, [])
        self.assertEqual(os.listdir(scratch), [])
        self.timings["kubectl rwg"] = time.monotonic() - t

    def sync_answers(self):
        """The sync pod ready; an unsigned request from the host through its Service (the node
        port; the generated certificate, which names publicName, verified against its CA):
        401 with WWW-Authenticate: OAuth and an oauth_problem."""
        pods = json.loads(self.kubectl("-n", NS, "get", "pods", "-l",
                                       "app.kubernetes.io/component=sync", "-o", "json"))["items"]
        self.assertEqual(len(pods), 1, [p["metadata"]["name"] for p in pods])
        self.assertTrue(all(c["ready"] for c in pods[0]["status"]["containerStatuses"]),
                        pods[0]["status"])
        self.sync_ca = os.path.join(self.tmp, "sync-ca.pem")
        with open(self.sync_ca, "w") as f:
            f.write(self.secret("rwg-tls-sync", "ca.crt"))
        ctx = ssl.create_default_context(cafile=self.sync_ca)
        url = f"https://{self.node_ip}:{SYNC_PORT}/api/v1/devices"
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, context=ctx, timeout=10)
        self.assertEqual(e.exception.code, 401)
        self.assertTrue(e.exception.headers.get("WWW-Authenticate", "").startswith("OAuth"),
                        dict(e.exception.headers))
        self.assertIn("oauth_problem=", e.exception.read().decode(errors="replace"))

    def tma_answers(self):
        """The tma pod ready; grpc.health.v1 SERVING through a port-forward to its Service,
        over TLS verified with the internal CA (as `kubectl rwg tma` reaches it)."""
        pods = json.loads(self.kubectl("-n", NS, "get", "pods", "-l",
                                       "app.kubernetes.io/component=tma", "-o", "json"))["items"]
        self.assertEqual(len(pods), 1, [p["metadata"]["name"] for p in pods])
        self.assertTrue(all(c["ready"] for c in pods[0]["status"]["containerStatuses"]),
                        pods[0]["status"])
        port = self.port_forward("rwg-tma", 50056)
        self.assertEqual(self.rwgctl(port, "health").strip(), "SERVING")

    def phone_register(self):
        c = sipclient.SipConnection(self.node_ip, SIP_PORT, tls=True, ca=self.public_ca)
        r = c.register_with_auth("1001", "set-1001", self.node_ip, expires=300)
        return c, r

    def phone_1001_registered(self):
        """As an admin would after installing: the CAs, a port-forward, a login, device 1001
        added; then its phone registers over TLS and control lists the binding."""
        self.save_cas()
        self.ctl_port = self.port_forward()
        self.rwgctl(self.ctl_port, "login")
        self.rwgctl(self.ctl_port, "device", "add", "--set-username", "1001", "--set-password",
                    "set-1001", "--icp-username", "21001", "--icp-password", "icp-1001")
        phone, answer = self.phone_register()
        self.assertTrue(answer.startswith("SIP/2.0 200"), answer)
        phone.close()
        self.assertIn("1001", self.registrations())

    # -- phones with audio: baresip on the host ---------------------------------------------

    def ctl_json(self, *args):
        return json.loads(self.rwgctl(self.ctl_port, "-o", "json", *args))

    def calls(self):
        return self.ctl_json("call", "list")["calls"]

    def registrations(self):
        return {r["set_username"]: r for r in self.ctl_json("registration", "list")["registrations"]}

    def relay_metrics(self, i):
        """Relay instance i's metrics: on the host network, at the node's address."""
        return urllib.request.urlopen(f"http://{self.node_ip}:{RELAY_METRICS + i}/metrics",
                                      timeout=5).read().decode()

    def relay_sessions(self):
        """Sessions on each relay instance (None for one not answering)."""
        out = []
        for i in range(2):
            try:
                m = re.search(r"(?m)^rwg_media_relay_sessions (\S+)", self.relay_metrics(i))
            except OSError:
                m = None
            out.append(int(float(m.group(1))) if m else None)
        return out

    def relay_packets(self, i):
        """Packets relay instance i (its process) forwarded, per leg and direction."""
        got = {}
        for leg, direction, value in re.findall(
                r'(?m)^rwg_media_relay_packets_total\{(?=[^}]*leg="(\w+)")(?=[^}]*direction="(\w+)")'
                r'[^}]*\} (\S+)', self.relay_metrics(i)):
            got[(leg, direction)] = got.get((leg, direction), 0) + float(value)
        return got

    def phones(self):
        """Remote phones 1002 (A) and 1003 (B) registered over TLS through the node port with
        mandatory SRTP, and office phone 2000 (O) registered straight to the iPBX over TCP with
        plain RTP; each answers by itself and plays its own tone."""
        for user in ("1002", "1003"):
            self.rwgctl(self.ctl_port, "device", "add", "--set-username", user, "--set-password",
                        f"set-{user}", "--icp-username", f"2{user}", "--icp-password",
                        f"icp-{user}")
        d = os.path.join(self.tmp, "phones")
        common = f"regint={REGINT};answermode=auto;audio_codecs=PCMU"

        def phone(name, account, tone, transport):
            p = Baresip(d, name, account + common, self.public_ca, tone, transport,
                        address=self.node_ip, seconds=300)
            self.addCleanup(p.stop)
            return p.start()
        a, b = (phone(f"phone-{user}", f"<sip:{user}@{self.node_ip};transport=tls>;"
                      f"auth_pass=set-{user};outbound=\"sip:{self.node_ip}:{SIP_PORT};"
                      "transport=tls\";mediaenc=srtp-mand;", tone, "tls")
                for user, tone in (("1002", TONE_A), ("1003", TONE_B)))
        o = phone("office", f"<sip:{OFFICE}@{self.node_ip};transport=tcp>;auth_pass="
                  f"{OFFICE_PASSWORD};outbound=\"sip:{self.node_ip}:{self.ipbx.port};"
                  "transport=tcp\";", TONE_O, "tcp")
        a.tone, b.tone, o.tone = TONE_A, TONE_B, TONE_O
        rwgtest.wait_until("the three phones registered at the iPBX", lambda: self.ipbx.registered()
                           >= {"21002", "21003", OFFICE}, timeout=30)
        return a, b, o

    def dump(self, *phones):
        edges = self.kubectl("-n", NS, "logs", "-l", "app.kubernetes.io/component=sip-edge",
                             "--tail=40", "--prefix", check=False)
        with open(self.ipbx.log_path, errors="replace") as f:
            kam = f.read()[-2000:]
        return ("\n--- sip-edge\n" + edges + "\n--- kamailio\n" + kam + "".join(
            f"\n--- {p.dir}\n" + "\n".join(l for l in p.read_log().splitlines()
                                          if "audio=" not in l)[-3000:] for p in phones))

    def answered(self, legs):
        calls = self.calls()
        return len(calls) == legs and all(c["state"] == "confirmed" for c in calls)

    def dial(self, caller, callee, number, legs):
        """`caller` dials `number` and `callee` answers: `legs` confirmed calls through rwg."""
        caller.command("dial", number)
        try:
            rwgtest.wait_until("the call answered", lambda: self.answered(legs), timeout=20)
        except AssertionError:
            raise AssertionError(f"not answered: {self.calls()}" + self.dump(caller, callee))

    def call(self, caller, callee, number, legs, during=None):
        """`caller` dials `number`; `callee` answers; after a few seconds (and `during`) the
        caller hangs up. Both heard the other and not themselves, the remote phones' media
        went to the node's address (a relay's port), and nothing is left: no call, no relay
        session. `legs`: calls through rwg (2 from a remote phone to a remote phone)."""
        ended = [p.read_log().count("terminated (duration") for p in (caller, callee)]
        recordings = [len(p.recordings()) for p in (caller, callee)]
        self.dial(caller, callee, number, legs)
        self.assertEqual(sum(n or 0 for n in self.relay_sessions()), legs)
        time.sleep(3)
        if during:
            during()
        caller.command("hangup")
        try:
            rwgtest.wait_until("no call left", lambda: self.calls() == [], timeout=15)
            rwgtest.wait_until("both phones ended the call", lambda: all(
                p.read_log().count("terminated (duration") > n
                for p, n in zip((caller, callee), ended)), timeout=10)
            rwgtest.wait_until("no relay session left", lambda: self.relay_sessions() == [0, 0],
                               timeout=10)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.calls()} {self.relay_sessions()}"
                                 + self.dump(caller, callee))
        time.sleep(0.5)
        for p, other, n in ((caller, callee, recordings[0]), (callee, caller, recordings[1])):
            recs = p.recordings()
            self.assertGreater(len(recs), n, f"{p.dir}: no recording of this call")
            heard = tone_windows(recs[-1], other.tone)
            self.assertGreaterEqual(sum(heard), 4, f"{p.dir} did not hear {other.tone} Hz")
            self.assertFalse(any(tone_windows(recs[-1], p.tone)), f"{p.dir} hears itself")
            if p.transport == "tls":
                log = p.read_log()
                media = re.findall(r"(?:remote|receiving from) (\d+\.\d+\.\d+\.\d+):(\d+)", log)
                self.assertTrue(media, f"{p.dir}: no media address in its log")
                for address, port in media:
                    self.assertEqual(address, self.node_ip)
                    self.assertTrue(21000 <= int(port) <= 21999, port)
                self.assertNotRegex(log, r"10\.244\.\d+\.\d+")
        return recs

    def watch_ipbx(self):
        """Samples the iPBX's registrations every half second from another thread until the
        returned function is called, which asserts that 21002 and 21003 were always there."""
        lost, stop = [], threading.Event()

        def sample():
            while not stop.wait(0.5):
                missing = {"21002", "21003"} - self.ipbx.registered()
                if missing:
                    lost.append(missing)
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()

        def done():
            stop.set()
            thread.join(10)
            self.assertEqual(lost, [], "the iPBX lost a registration")
        return done

    def registered_again(self, gone, what):
        """Waits until phones 1002 and 1003 are registered through instances other than
        `gone` (reachable), the iPBX holding both ICP-side registrations all along."""
        t = time.monotonic()

        def moved():
            held = self.ipbx.registered()
            self.assertLessEqual({"21002", "21003"}, held, "the iPBX lost a registration")
            regs = self.registrations()
            return all(u in regs and regs[u]["instance"] not in gone and regs[u]["reachable"]
                       for u in ("1002", "1003"))
        try:
            rwgtest.wait_until(what, moved, timeout=REGINT + 30)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.registrations()}")
        self.timings[what] = time.monotonic() - t

    @staticmethod
    def worker_policies():
        """The scheduling policy of every packet worker thread (rwg-worker-N) of the relay
        processes on this node, by (pool part, thread name)."""
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().decode(errors="replace").split("\0")
                if not args[0].endswith("media-relay"):
                    continue
                part = next(a.split("=", 1)[1] for a in args if a.startswith("--pool-part="))
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        name = f.read().strip()
                    if name.startswith("rwg-worker-"):
                        out[(part, name)] = os.sched_getscheduler(int(tid))
            except (OSError, StopIteration):
                continue
        return out

    def relay_deleted_during_a_call(self, a, b):
        """A calls B; the relay pod carrying the call is deleted; its StatefulSet starts it
        again under the same name, it restores its sessions from Redis (the same ports and
        keys) and the call's media flows again both ways; then A hangs up."""
        self.dial(a, b, "21003", 2)
        time.sleep(2)
        sessions = self.relay_sessions()
        self.assertEqual(sum(sessions), 2, sessions)
        i = 0 if sessions[0] else 1
        pod = f"rwg-media-relay-{i}-0"
        uid = self.uid(pod)
        t = time.monotonic()
        self.kubectl("-n", NS, "delete", "pod", pod, "--wait=false")
        self.pod_back(pod, uid)
        ready = time.monotonic()
        self.timings["relay pod deleted: Ready again"] = ready - t
        # What the phones had recorded by then (a recording only grows with media received).
        recorded = {p: os.path.getsize(p.recordings()[-1]) for p in (a, b)}

        def flowing():
            try:
                got = self.relay_packets(i)
            except OSError:
                return False
            return all(got.get((leg, d), 0) > 50 for leg in ("set", "icp") for d in ("in", "out"))
        try:
            rwgtest.wait_until("media through the restored relay", flowing, timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.relay_packets(i)}\n"
                                 + self.kubectl("-n", NS, "logs", pod, check=False)[-3000:]
                                 + self.dump(a, b))
        self.timings["relay pod deleted: media again after Ready"] = time.monotonic() - ready
        self.timings["relay pod deleted: media paused"] = time.monotonic() - t
        log = self.kubectl("-n", NS, "logs", pod)
        self.assertIn("session restored", log)
        # The restarted relay's workers are real-time (the node was prepared above).
        self.assertNotIn("packet worker keeps the process's scheduling", log)
        workers = {k: v for k, v in self.worker_policies().items() if k[0] == f"{i + 1}/2"}
        self.assertTrue(workers, self.worker_policies())
        self.assertEqual(set(workers.values()), {os.SCHED_FIFO}, workers)
        self.assertTrue(self.answered(2), self.calls())  # the call went on
        time.sleep(4)
        a.command("hangup")
        rwgtest.wait_until("no call left", lambda: self.calls() == [], timeout=15)
        rwgtest.wait_until("no relay session left", lambda: self.relay_sessions() == [0, 0],
                           timeout=10)
        time.sleep(0.5)
        # Each phone heard the other in what it received after the relay was back.
        for p, other in ((a, b), (b, a)):
            rec = p.recordings()[-1]
            with wave.open(rec, "rb") as w:
                rate = w.getframerate() * w.getsampwidth() * w.getnchannels()
            after = (os.path.getsize(rec) - recorded[p]) / rate
            self.assertGreater(after, 3, f"{p.dir}: {after:.1f} s received after the relay was back")
            heard = tone_windows(rec, other.tone)[-int(after / 0.5):]
            self.assertGreaterEqual(sum(heard), max(4, len(heard) * 0.6),
                                    f"{p.dir}: {other.tone} Hz not heard after the relay was back")

    def redis_ask(self, pod, *command, port=6379):
        """One command to a Redis pod (port 6379) or a sentinel (26379), sent from inside the pod
        (kubectl exec, busybox nc: nothing to keep open across the pod's restarts). The reply's
        lines without RESP's type and length lines; [] when nothing answers."""
        container = "sentinel" if port == 26379 else "redis"
        auth = f"AUTH {self.redis_password}\r\n" if self.redis_password else ""
        out = self.kubectl("-n", NS, "exec", pod, "-c", container, "--", "/usr/bin/busybox",
                           "sh", "-c", f'printf "%s" "$0" | /usr/bin/busybox timeout 3 '
                           f'/usr/bin/busybox nc 127.0.0.1 {port}',
                           auth + " ".join(command) + "\r\n", check=False, timeout=30)
        lines = out.replace("\r", "").split("\n")
        if auth and lines and lines[0] == "+OK":
            lines = lines[1:]
        return [line.lstrip("+:") for line in lines if line and line[0] not in "*$"]

    def sentinel_master(self, everyone=False):
        """The master's pod as the first sentinel answering names it ("rwg-redis-N"; "" when
        none does). everyone: only when all three answer and agree."""
        named = set()
        for i in range(3):
            got = self.redis_ask(f"rwg-redis-sentinel-{i}", "SENTINEL", "get-master-addr-by-name",
                                 "rwg", port=26379)
            host = got[0].split(".")[0] if got and got[0].startswith("rwg-redis-") else ""
            if host and not everyone:
                return host
            named.add(host)
        return named.pop() if len(named) == 1 else ""

    def redis_role(self, pod):
        """ROLE of a Redis pod: ["master", ...] or ["slave", "<master's pod>", ...]."""
        role = self.redis_ask(pod, "ROLE")
        if len(role) > 1 and role[0] == "slave":
            role[1] = role[1].split(".")[0]
        return role

    def sentinels_set(self, option, value):
        for i in range(3):
            self.assertEqual(self.redis_ask(f"rwg-redis-sentinel-{i}", "SENTINEL", "SET", "rwg",
                                            option, value, port=26379), ["OK"])

    def pod_back(self, pod, uid, timeout=180):
        """Waits until `pod` is a new pod (not `uid`), Ready."""
        def ready():
            try:
                p = json.loads(self.kubectl("-n", NS, "get", "pod", pod, "-o", "json",
                                            check=False))
            except ValueError:
                return False
            return p["metadata"]["uid"] != uid and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", []))
        rwgtest.wait_until(f"{pod} back", ready, timeout=timeout)

    def uid(self, pod):
        return self.kubectl("-n", NS, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}")

    def test_redis_sentinel(self):
        """redis.sentinel: three Redis pods and three sentinels. A phone registers, then:
        - the master's pod is deleted: the sentinels promote a replica; the services follow it;
          the binding written before is still there and the phone registers again; the deleted
          pod comes back as a replica of the new master (its init step asked the sentinels);
        - the new master's pod is deleted while the sentinels are slow to notice: it comes back
          empty and named the master, and waits for the failover instead of starting as an
          empty master its replicas would copy;
        - that master's pod and all three sentinels are deleted at once: nobody names a master
          any more, the replica holding the data is promoted (not an empty pod), and the
          binding is still there."""
        t = time.monotonic()
        self.helm("install", "rwg", CHART, "-n", NS, "--create-namespace", "-f", self.values(
            redis={"sentinel": {"enabled": True, "replicas": 2, "downAfterMilliseconds": 2000,
                                "failoverTimeoutMilliseconds": 10000}},
            sync={"enabled": False}, tma={"enabled": False},
            sipEdge={"replicas": 1}, control={"replicas": 1}, provisioning={"replicas": 1},
            mediaRelay={"instances": 1, "portMin": 21000, "portMax": 21499, "workers": 1}),
            "--wait", "--timeout", "8m")
        self.timings["helm install with Sentinel --wait"] = time.monotonic() - t
        self.redis_password = self.secret("rwg-redis", "password")
        self.assertEqual(self.sentinel_master(everyone=True), "rwg-redis-0")
        for pod in ("rwg-redis-1", "rwg-redis-2"):
            self.assertEqual(self.redis_role(pod)[:2], ["slave", "rwg-redis-0"])
        self.phone_1001_registered()
        time.sleep(2)  # replicated (and past Redis's once-a-second AOF write)
        self.ctl_port = self.port_forward()

        def binding_kept():
            p = subprocess.run([os.path.join(BUILD, "bin", "rwgctl"), "-o", "json",
                                "registration", "list"], env=self.rwgctl_env(self.ctl_port),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
            if p.returncode != 0:
                return False  # control not on the new master yet (UNAVAILABLE)
            return any(r["set_username"] == "1001" for r in json.loads(p.stdout)["registrations"])

        def registers():
            phone, answer = self.phone_register()
            phone.close()
            return answer.startswith("SIP/2.0 200")

        # 1. The master's pod deleted.
        t = time.monotonic()
        uid = self.uid("rwg-redis-0")
        self.kubectl("-n", NS, "delete", "pod", "rwg-redis-0", "--wait=false")
        rwgtest.wait_until("a replica promoted", lambda: self.sentinel_master() in (
            "rwg-redis-1", "rwg-redis-2"), timeout=90)
        first = self.sentinel_master()
        self.timings["Redis master deleted: replica promoted"] = time.monotonic() - t
        # The binding written before the master went, read through the new master (control
        # follows it too), before the phone registers again.
        rwgtest.wait_until("the binding read through the new master", binding_kept, timeout=60)
        rwgtest.wait_until("the phone registers through the new master", registers, timeout=60)
        self.timings["Redis master deleted: phone registered again"] = time.monotonic() - t
        self.assertIn("1001", self.rwgctl(self.ctl_port, "device", "list"))
        edge = self.kubectl("-n", NS, "logs", "deploy/rwg-sip-edge")
        self.assertIn("Redis master changed; following it", edge)
        self.pod_back("rwg-redis-0", uid)
        self.assertEqual(self.redis_role("rwg-redis-0")[:2], ["slave", first])
        # Its init step asked the sentinels: it started as the new master's replica.
        self.assertIn(f"replicaof {first}.", self.kubectl("-n", NS, "logs", "rwg-redis-0",
                                                           "-c", "role"))

        # 2. The new master's pod deleted while the sentinels take long to call it down: it
        # comes back empty, still named the master, and waits.
        self.sentinels_set("down-after-milliseconds", "600000")
        uid = self.uid(first)
        self.kubectl("-n", NS, "delete", "pod", first, "--wait=false")
        rwgtest.wait_until("the emptied master waiting for a failover", lambda: (
            "waiting for a failover" in self.kubectl("-n", NS, "logs", first, "-c", "role",
                                                     check=False)), timeout=120)
        self.assertEqual(self.sentinel_master(everyone=True), first)
        t = time.monotonic()
        # (Not straight back to 2 s: Sentinel promotes no replica whose link to the master has
        # been down for longer than ten times that plus the time the master was seen down.)
        self.sentinels_set("down-after-milliseconds", "15000")
        rwgtest.wait_until("another replica promoted", lambda: self.sentinel_master(
            everyone=True) not in ("", first), timeout=90)
        second = self.sentinel_master()
        self.sentinels_set("down-after-milliseconds", "2000")
        self.pod_back(first, uid)
        self.timings["emptied master waited: back as a replica"] = time.monotonic() - t
        self.assertEqual(self.redis_role(first)[:2], ["slave", second])
        rwgtest.wait_until("the binding read through the new master", binding_kept, timeout=60)

        # 3. That master and every sentinel deleted at once.
        t = time.monotonic()
        uids = {p: self.uid(p) for p in (second, *(f"rwg-redis-sentinel-{i}" for i in range(3)))}
        self.kubectl("-n", NS, "delete", "pod", *uids, "--wait=false")
        for pod, uid in uids.items():
            self.pod_back(pod, uid)
        rwgtest.wait_until("the sentinels agreeing on a master", lambda: self.sentinel_master(
            everyone=True) not in ("", second), timeout=90)
        third = self.sentinel_master()
        self.timings["master and sentinels deleted: a master again"] = time.monotonic() - t
        logs = "".join(self.kubectl("-n", NS, "logs", p, "-c", c, check=False)
                       for p, c in ((second, "role"), *((f"rwg-redis-sentinel-{i}", "config")
                                                        for i in range(3))))
        self.assertIn(f"promoting the replica holding the most, {third}.", logs)
        for pod in {"rwg-redis-0", "rwg-redis-1", "rwg-redis-2"} - {third}:
            rwgtest.wait_until(f"{pod} a replica of {third}", lambda: self.redis_role(
                pod)[:2] == ["slave", third], timeout=60)
        rwgtest.wait_until("the binding read through the promoted replica", binding_kept,
                           timeout=90)
        rwgtest.wait_until("the phone registers through it", registers, timeout=60)
        self.timings["master and sentinels deleted: phone registered again"] = (
            time.monotonic() - t)
        self.helm("uninstall", "rwg", "-n", NS, "--wait", "--timeout", "5m")

    def redis_over_tls(self):
        """redis-server on the node's address, TLS only, client certificates required: a CA, a
        server certificate for the node's address, a client certificate. Returns (port,
        password, redis-cli's TLS arguments)."""
        d = os.path.join(self.tmp, "redis-tls")
        os.makedirs(d)

        def ossl(*args):
            subprocess.run(["openssl", *args], check=True, cwd=d, capture_output=True)
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", "/CN=redis test CA", "-keyout", "ca.key", "-out", "ca.crt")
        for name, ext in (("server", f"subjectAltName=IP:{self.node_ip}\n"),
                          ("client", "extendedKeyUsage=clientAuth\n")):
            ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN=rwg redis {name}", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr")
            with open(os.path.join(d, f"{name}.ext"), "w") as f:
                f.write(ext)
            ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out",
                 f"{name}.crt")
        password = "redis-tls-" + os.urandom(8).hex()
        with socket.socket() as probe:
            probe.bind((self.node_ip, 0))
            port = probe.getsockname()[1]
        log = open(os.path.join(d, "redis.log"), "w")
        redis = subprocess.Popen([
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", self.node_ip,
            "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
            "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes",
            "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", d],
            cwd=d, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (redis.terminate(), redis.wait(10), log.close()))
        cli = ["redis-cli", "-h", self.node_ip, "-p", str(port), "--tls", "--cacert",
               os.path.join(d, "ca.crt"), "--cert", os.path.join(d, "client.crt"), "--key",
               os.path.join(d, "client.key"), "--no-auth-warning", "-a", password]
        rwgtest.wait_until("redis-server over TLS", lambda: subprocess.run(
            cli + ["PING"], capture_output=True, text=True).stdout.strip() == "PONG", timeout=20)
        # Without a client certificate Redis refuses the handshake.
        plain = subprocess.run(cli[:8] + ["--no-auth-warning", "-a", password, "PING"],
                               capture_output=True, text=True)
        self.assertNotEqual(plain.stdout.strip(), "PONG", plain)
        self.kubectl("create", "namespace", NS)
        self.kubectl("-n", NS, "create", "secret", "generic", "redis-ca",
                     f"--from-file=ca.crt={os.path.join(d, 'ca.crt')}")
        self.kubectl("-n", NS, "create", "secret", "tls", "redis-client",
                     f"--cert={os.path.join(d, 'client.crt')}",
                     f"--key={os.path.join(d, 'client.key')}")
        self.kubectl("-n", NS, "create", "secret", "generic", "redis-password",
                     f"--from-literal=password={password}")
        return port, password, cli

    def test_external_redis_over_tls(self):
        """redis.external with TLS: every service reaches a Redis outside the cluster (on the
        node, TLS only, client certificates required) through its TLS tunnel; a device added
        and a phone's binding are read back from that Redis over TLS; the Redis has no
        plaintext port."""
        port, password, cli = self.redis_over_tls()
        t = time.monotonic()
        self.helm("install", "rwg", CHART, "-n", NS, "-f", self.values(
            redis={"enabled": False, "external": {
                "address": f"{self.node_ip}:{port}",
                "passwordSecret": {"name": "redis-password", "key": "password"},
                "tls": {"enabled": True, "caSecret": {"name": "redis-ca", "key": "ca.crt"},
                        "clientSecret": "redis-client"}}},
            sipEdge={"replicas": 1}, control={"replicas": 1}, provisioning={"replicas": 1},
            mediaRelay={"instances": 1, "portMin": 21000, "portMax": 21499, "workers": 1}),
            "--wait", "--timeout", "8m")
        self.timings["helm install with an external Redis over TLS --wait"] = time.monotonic() - t
        self.phone_1001_registered()
        keys = subprocess.run(cli + ["--raw", "KEYS", "rwg:*"], capture_output=True,
                              text=True, check=True).stdout.split()
        self.assertTrue(any("1001" in k for k in keys), keys)
        # Every service holds connections to it (each through its own TLS tunnel).
        clients = subprocess.run(cli + ["CLIENT", "LIST"], capture_output=True, text=True,
                                 check=True).stdout
        # (control, sip-edge, provisioning, sync and tma from their pods' addresses; the media
        # relay and redis-cli from the node's).
        peers = set(re.findall(r"\baddr=(\S+):\d+ ", clients))
        self.assertGreaterEqual(len(peers), 6, clients)
        pods = json.loads(self.kubectl("-n", NS, "get", "pods", "-o", "json"))["items"]
        tls = [c for p in pods for c in p["spec"]["containers"]
               if "--redis-tls" in c.get("args", [])]
        self.assertGreaterEqual(len(tls), 6, [c["name"] for c in tls])
        for c in tls:
            self.assertIn("--redis-cert-file=/etc/rwg/redis-tls/client/tls.crt", c["args"])
        for deploy in ("rwg-sip-edge", "rwg-control", "rwg-provisioning"):
            self.assertNotIn(password, self.kubectl("-n", NS, "logs", f"deploy/{deploy}"))
        self.helm("uninstall", "rwg", "-n", NS, "--wait", "--timeout", "5m")

    def test_chart(self):
        t = time.monotonic()
        self.helm("install", "rwg", CHART, "-n", NS, "--create-namespace", "-f", self.values(),
                  "--wait", "--timeout", "8m")
        self.timings["helm install --wait"] = time.monotonic() - t
        pods = json.loads(self.kubectl("-n", NS, "get", "pods", "-o", "json"))["items"]
        names = sorted(p["metadata"]["name"] for p in pods)
        self.assertEqual(len([n for n in names if n.startswith("rwg-sip-edge-")]), 2, names)
        self.assertIn("rwg-media-relay-0-0", names)
        self.assertIn("rwg-media-relay-1-0", names)
        for p in pods:
            for c in p["spec"]["containers"]:
                self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
                self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])

        # The admin API as NOTES.txt says: the internal CA, the generated password, a port-forward.
        self.save_cas()
        port = self.port_forward()
        self.rwgctl(port, "login")
        self.rwgctl(port, "device", "add", "--set-username", "1001", "--set-password",
                    "set-1001", "--icp-username", "21001", "--icp-password", "icp-1001")
        key = json.loads(self.rwgctl(port, "-o", "json", "hash", "show"))["key"]
        self.assertEqual(self.rwgctl(port, "config", "get", "icp.host").strip(), self.node_ip)
        self.kubectl_plugin()
        self.sync_answers()
        self.tma_answers()
        # Two relays, disjoint halves of 21000-21999.
        relays = self.kubectl("-n", NS, "logs", "rwg-media-relay-0-0") + self.kubectl(
            "-n", NS, "logs", "rwg-media-relay-1-0")
        self.assertIn("ports=21000-21499", relays)
        self.assertIn("ports=21500-21999", relays)
        # mediaRelay.realtime on a node whose kernel gives containers no real-time budget (RT
        # group scheduling, kernel.sched_rt_runtime_us >= 0): the relays say so and run their
        # workers at normal priority. The node prepared as docs/kubernetes.md says, a relay
        # restarted later (the relay pod deletion below) gets SCHED_FIFO workers.
        policies = self.worker_policies()
        self.assertEqual(len(policies), 4, policies)  # two relays, two workers each
        if rt_group_scheduling():
            # Once per relay, naming the cause (each has CAP_SYS_NICE).
            self.assertEqual(relays.count("packet worker keeps the process's scheduling"), 2,
                             relays)
            self.assertEqual(relays.count("its cgroup has no real-time runtime"), 2, relays)
            self.assertEqual(set(policies.values()), {os.SCHED_OTHER}, policies)
            with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
                budget = f.read().strip()
            run("sysctl", "-qw", "kernel.sched_rt_runtime_us=-1")
            self.addCleanup(run, "sysctl", "-qw", f"kernel.sched_rt_runtime_us={budget}")
        else:
            self.assertNotIn("packet worker keeps the process's scheduling", relays)
            self.assertEqual(set(policies.values()), {os.SCHED_FIFO}, policies)

        t = time.monotonic()
        out = self.helm("test", "rwg", "-n", NS, "--timeout", "5m")
        self.timings["helm test"] = time.monotonic() - t
        self.assertEqual(out.count("Phase:          Succeeded"), 4, out)  # sync's too
        self.assertNotIn("rwg-test-", self.kubectl("-n", NS, "get", "pods"))  # deleted on success

        # A phone on the host: its file through the hash over HTTPS on the node port...
        ctx = ssl.create_default_context(cafile=self.public_ca)
        url = f"https://{self.node_ip}:{HTTPS_PORT}/{key}/ftp_67xxi/aastra.cfg"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            self.assertEqual(r.read().decode(), f"sip proxy ip: {self.node_ip}\n")
        wrong = ("1" if key[0] == "0" else "0") + key[1:]
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace(key, wrong), context=ctx, timeout=10)
        self.assertEqual(e.exception.code, 404)
        # ...then REGISTER over TLS through the node port, registered at the iPBX.
        phone, answer = self.phone_register()
        self.assertTrue(answer.startswith("SIP/2.0 200"), answer)
        self.assertIn("<sip:1001@", answer)
        rwgtest.wait_until("ICP-side registration", lambda: "21001" in str(
            self.ipbx.registered()), timeout=20)
        # A request from the iPBX reaches the phone over its connection: no pod address in it.
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((self.node_ip, 0))
        self.addCleanup(udp.close)
        msg = "\r\n".join([
            f"MESSAGE sip:21001@{self.node_ip}:{self.ipbx.port} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.node_ip}:{udp.getsockname()[1]};branch=z9hG4bK{os.urandom(4).hex()}",
            f"From: <sip:21002@{self.node_ip}>;tag=t1", f"To: <sip:21001@{self.node_ip}>",
            f"Call-ID: {os.urandom(6).hex()}", "CSeq: 1 MESSAGE", "Max-Forwards: 70",
            "Content-Type: text/plain", "Content-Length: 2", "", "hi"])
        udp.sendto(msg.encode(), (self.node_ip, self.ipbx.port))
        got = phone.read_message()
        self.assertTrue(got and got.startswith("MESSAGE "), got)
        self.assertIn(f"Via: SIP/2.0/TLS {self.node_ip}:{SIP_PORT};", got)
        self.assertNotRegex(got, r"10\.244\.\d+\.\d+")
        phone.close()

        # Calls with audio both ways through the relay pods: a remote phone calling another
        # (out to the iPBX and back in), the office calling a remote phone.
        self.ctl_port = port
        a, b, o = self.phones()
        t = time.monotonic()
        self.call(a, b, "21003", 2)
        self.call(o, a, "21002", 1)
        self.timings["two calls (A to B, office to A)"] = time.monotonic() - t

        # A relay pod deleted during a call: the call's media resumes.
        t = time.monotonic()
        self.relay_deleted_during_a_call(a, b)
        self.timings["relay pod deleted during a call"] = time.monotonic() - t

        # A sip-edge pod deleted (the one holding A) during a call between A and B: the other
        # instance ends the lost instance's call (B hears the BYE), its relay sessions are
        # freed; no registration is lost, A registers again through the other instance, and
        # calls go both ways.
        t = time.monotonic()
        victim = self.registrations()["1002"]["instance"]
        ended_b = b.read_log().count("terminated (duration")
        self.dial(a, b, "21003", 2)
        time.sleep(2)
        watched = self.watch_ipbx()
        self.kubectl("-n", NS, "delete", "pod", victim, "--wait=false")
        try:
            # The survivor notices the instance gone after 15 s and looks every 5 s.
            rwgtest.wait_until("the lost instance's call ended", lambda: self.calls() == [],
                               timeout=60)
            rwgtest.wait_until("B told the call ended", lambda: b.read_log().count(
                "terminated (duration") > ended_b, timeout=10)
            rwgtest.wait_until("no relay session left", lambda: self.relay_sessions() == [0, 0],
                               timeout=15)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.calls()} {self.relay_sessions()}" + self.dump(a, b))
        self.timings["sip-edge pod deleted during a call: call ended"] = time.monotonic() - t
        survivors = [n for n in self.kubectl(
            "-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=sip-edge", "-o",
            "jsonpath={.items[*].metadata.name}").split() if n != victim]
        self.assertIn("call of a lost instance ended", "".join(
            self.kubectl("-n", NS, "logs", n, check=False) for n in survivors))
        a.command("hangup")  # A's end, if its dialog outlived its connection
        self.registered_again({victim}, "sip-edge pod deleted: phones registered elsewhere")
        watched()
        self.call(a, b, "21003", 2)
        self.call(o, a, "21002", 1)
        self.timings["sip-edge pod deleted, calls after"] = time.monotonic() - t

        # An upgrade changing values: the configuration follows, sip-edge rolls.
        before = set(self.kubectl("-n", NS, "get", "pods", "-l",
                                  "app.kubernetes.io/component=sip-edge", "-o",
                                  "jsonpath={.items[*].metadata.name}").split())
        watched = self.watch_ipbx()
        sync_ca = self.secret("rwg-tls-sync", "ca.crt")
        t = time.monotonic()
        self.helm("upgrade", "rwg", CHART, "-n", NS,
                  "-f", self.values(licences=5, sipEdge={"logLevel": "debug"}),
                  "--wait", "--timeout", "8m")
        self.timings["helm upgrade --wait"] = time.monotonic() - t
        # The generated secrets were kept: the same admin password logs in again.
        port = self.port_forward()
        self.rwgctl(port, "login")
        self.assertEqual(self.rwgctl(port, "config", "get", "licences.teleworker").strip(), "5")
        self.assertEqual(self.secret("rwg-tls-sync", "ca.crt"), sync_ca)  # kept
        rwgtest.wait_until("the old sip-edge pods gone", lambda: not before & set(self.kubectl(
            "-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=sip-edge", "-o",
            "jsonpath={.items[*].metadata.name}").split()), timeout=120)
        # The phones registered again through the new pods, the iPBX holding their
        # registrations all along; they call each other.
        self.ctl_port = port
        self.registered_again(before, "helm upgrade: phones registered again")
        watched()
        self.call(a, b, "21003", 2)
        for p in (a, b, o):
            p.stop()
        phone, answer = self.phone_register()
        self.assertTrue(answer.startswith("SIP/2.0 200"), answer)
        phone.close()

        # Redis backup and restore as docs/kubernetes.md says: a snapshot through a
        # port-forward; the Redis pod deleted (emptyDir: its data is gone); the snapshot turned
        # into commands by a local redis-server and piped back; the services restarted.
        t = time.monotonic()
        rport = self.port_forward("rwg-redis", 6379)
        renv = dict(self.env, REDISCLI_AUTH=self.secret("rwg-redis", "password"))
        backup = os.path.join(self.tmp, "backup.rdb")
        run("redis-cli", "-p", str(rport), "--rdb", backup, env=renv)
        self.kubectl("-n", NS, "delete", "pod", "rwg-redis-0", "--wait=true", timeout=120)
        self.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/rwg-redis-0",
                     "--timeout=120s", timeout=150)
        rport = self.port_forward("rwg-redis", 6379)
        rwgtest.wait_until("the new Redis empty", lambda: run(
            "redis-cli", "-p", str(rport), "exists", "rwg:devices", env=renv,
            check=False).strip() == "0", timeout=30)
        local = os.path.join(self.tmp, "restore")
        os.makedirs(local)
        os.rename(backup, os.path.join(local, "dump.rdb"))
        lport = rwgtest.free_port()
        subprocess.run(["redis-server", "--port", str(lport), "--bind", "127.0.0.1", "--dir", local,
                        "--save", "", "--daemonize", "yes"], check=True, timeout=30)
        self.addCleanup(run, "redis-cli", "-p", str(lport), "shutdown", "nosave", check=False)
        rwgtest.wait_until("local redis", lambda: run("redis-cli", "-p", str(lport), "ping",
                                                      check=False).strip() == "PONG")
        run("redis-cli", "-p", str(lport), "config", "set", "aof-use-rdb-preamble", "no")
        run("redis-cli", "-p", str(lport), "config", "set", "appendonly", "yes")
        base = os.path.join(local, "appendonlydir", "appendonly.aof.1.base.aof")
        rwgtest.wait_until("the rewritten AOF", lambda: os.path.exists(base) and run(
            "redis-cli", "-p", str(lport), "info", "persistence",
            check=False).count("aof_rewrite_in_progress:0") == 1, timeout=30)
        with open(base, "rb") as f:
            p = subprocess.run(["redis-cli", "-p", str(rport), "--pipe"], env=renv, stdin=f,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertIn(b"errors: 0", p.stdout)
        self.kubectl("-n", NS, "rollout", "restart", "deploy")
        for d in ("rwg-control", "rwg-sip-edge", "rwg-provisioning", "rwg-sync", "rwg-tma"):
            self.kubectl("-n", NS, "rollout", "status", f"deploy/{d}", "--timeout=180s",
                         timeout=200)
        self.timings["redis backup and restore"] = time.monotonic() - t
        port = self.port_forward()
        self.rwgctl(port, "login")  # the admin account came back with the data
        self.assertIn("1001", self.rwgctl(port, "device", "list"))
        self.assertEqual(json.loads(self.rwgctl(port, "-o", "json", "hash", "show"))["key"], key)
        def registers():
            phone, answer = self.phone_register()
            phone.close()
            return answer.startswith("SIP/2.0 200")
        # Every Deployment restarted at once on one loaded node (six with sync and tma): the
        # SIP edge's node port may take longer than a minute to answer again.
        rwgtest.wait_until("the phone registers again", registers, timeout=180)

        # Uninstall: nothing of the release is left.
        t = time.monotonic()
        self.helm("uninstall", "rwg", "-n", NS, "--wait", "--timeout", "5m")
        self.timings["helm uninstall --wait"] = time.monotonic() - t

        def leftovers():
            out = self.kubectl("-n", NS, "get",
                               "all,secrets,configmaps,pvc,networkpolicies,pdb,jobs,"
                               "serviceaccounts", "-o", "name")
            return [n for n in out.split() if not n.startswith(
                ("secret/default-token-", "configmap/kube-root-ca.crt",
                 "serviceaccount/default"))]
        rwgtest.wait_until("nothing left in the namespace", lambda: not leftovers(), timeout=120)


if __name__ == "__main__":
    unittest.main()
