"""Integration: the Helm chart helm/rwg installed on the single-node cluster of tools/k8s.

Not registered with CTest (a cold run builds Kubernetes). Run it by hand, as root, from
tests/integration, after ./tools/rwg build, with no cluster running:

    RWG_K8S_TEST=1 python3 -m unittest -v test_k8s_chart

It starts a cluster of its own (`./tools/rwg k8s up` with a temporary RWG_STATE_DIR), builds
and imports the images (`./tools/rwg images`: the four services, Redis, the test image), runs
Kamailio on the node's address as the iPBX, then:
- `helm install --wait` (NodePort exposure: SIP/TLS and HTTPS on node ports, two relay
  instances with disjoint port pools), a device added with the host's rwgctl through
  `kubectl port-forward` (what NOTES.txt says); `kubectl rwg` (tools/kubectl-rwg on PATH) adding,
  showing and deleting a device in the release's namespace (-n, then the context's), rwgctl's
  exit code through it, the message for a namespace without rwg, no port-forward left;
- `helm test`: every service's health, a provisioning fetch through the hash, a REGISTER
  through the edge (registered at the iPBX);
- from the host, as a phone: the file over HTTPS on the node's address through the hash (a
  wrong hash: 404), a REGISTER over TLS through the node port (200, the iPBX has the ICP-side
  registration), and a request from the iPBX reaching the phone with no pod address in it;
- `helm upgrade` changing values (licences, the edge's log level): the configuration follows,
  sip-edge rolls, the phone registers again;
- Redis backup and restore as docs/kubernetes.md says (a snapshot through a port-forward, the
  Redis pod deleted, the snapshot piped back): the admin, the device and the hash key are back;
- `helm uninstall`: nothing of the release is left in the namespace;
then `down --purge`. Timings are printed.
"""
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import rwgtest
import sipclient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
RWG = os.path.join(ROOT, "tools", "rwg")
CHART = os.path.join(ROOT, "helm", "rwg")
BUILD = os.environ.get("RWG_BUILD_DIR", os.path.join(ROOT, "build"))
NS = "rwg"
SIP_PORT, HTTPS_PORT = 30561, 30445


def run(*args, env=None, timeout=120, check=True, stdin=None):
    p = subprocess.run(args, env=env, timeout=timeout, text=True, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-4000:]}")
    return p.stdout


@unittest.skipUnless(os.environ.get("RWG_K8S_TEST") == "1" and os.geteuid() == 0,
                     "RWG_K8S_TEST=1 and root: builds Kubernetes when it is not cached")
class K8sChartTest(unittest.TestCase):

    def setUp(self):
        missing = [b for b in ("control", "sip-edge", "media-relay", "provisioning", "rwgctl")
                   if not os.access(os.path.join(BUILD, "bin", b), os.X_OK)]
        if missing:
            self.skipTest(f"not built: {missing} (./tools/rwg build)")
        self.timings = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-k8s-chart-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("RWG_") or k in ("RWG_K8S_CACHE", "RWG_BUILD_DIR")}
        self.env["RWG_STATE_DIR"] = os.path.join(self.tmp, "state")
        self.addCleanup(self.report)
        self.addCleanup(self.down)
        self.timed("k8s up", RWG, "k8s", "up", timeout=3600)
        self.timed("images", RWG, "images", timeout=900)
        self.node_ip = self.kubectl("get", "nodes", "-o",
                                    "jsonpath={.items[0].status.addresses[?(@.type=="
                                    "\"InternalIP\")].address}").strip()
        self.assertRegex(self.node_ip, r"^\d+\.\d+\.\d+\.\d+$")
        kam_dir = os.path.join(self.tmp, "kamailio")
        os.makedirs(kam_dir)
        self.ipbx = rwgtest.Kamailio(kam_dir, self.node_ip, {"21001": "icp-1001"}).start()
        self.addCleanup(self.ipbx.stop)

    def timed(self, what, *args, timeout=600):
        t = time.monotonic()
        out = run(*args, env=self.env, timeout=timeout)
        self.timings[what] = time.monotonic() - t
        return out

    def report(self):
        print("\ntimings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))

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

    def rwgctl(self, port, *args):
        env = dict(self.env, RWG_SERVER=f"localhost:{port}", RWG_CA_CERT=self.internal_ca,
                   RWG_TOKEN_FILE=os.path.join(self.tmp, "token"),
                   RWG_PASSWORD=self.secret("rwg-secrets", "admin-password"))
        return run(os.path.join(BUILD, "bin", "rwgctl"), *args, env=env, timeout=60)

    def values(self, **extra):
        v = {
            "publicName": self.node_ip,
            "publicAddress": self.node_ip,
            "icp": {"host": self.node_ip, "sipPort": self.ipbx.port, "sipTransports": "tcp"},
            "licences": 10,
            "expose": {"type": "NodePort"},
            "ports": {"sipTls": SIP_PORT, "https": HTTPS_PORT},
            "tls": {"public": {"dnsNames": ["localhost"]}},
            "mediaRelay": {"instances": 2, "portMin": 21000, "portMax": 21999},
            "provisioning": {"files": {"aastra.cfg": f"sip proxy ip: {self.node_ip}\n"}},
            "tests": {"register": {"user": "1001", "password": "set-1001"}},
        }
        v.update(extra)
        path = os.path.join(self.tmp, "values.json")
        with open(path, "w") as f:
            json.dump(v, f)
        return path

    def port_forward(self, service="rwg-control", port=50051):
        p = subprocess.Popen([RWG, "k8s", "kubectl", "-n", NS, "port-forward", f"svc/{service}",
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

    def phone_register(self):
        c = sipclient.SipConnection(self.node_ip, SIP_PORT, tls=True, ca=self.public_ca)
        r = c.register_with_auth("1001", "set-1001", self.node_ip, expires=300)
        return c, r

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
        self.internal_ca = os.path.join(self.tmp, "internal-ca.pem")
        with open(self.internal_ca, "w") as f:
            f.write(self.secret("rwg-tls-internal", "ca.crt"))
        self.public_ca = os.path.join(self.tmp, "public-ca.pem")
        with open(self.public_ca, "w") as f:
            f.write(self.secret("rwg-tls-public", "ca.crt"))
        port = self.port_forward()
        self.rwgctl(port, "login")
        self.rwgctl(port, "device", "add", "--set-username", "1001", "--set-password",
                    "set-1001", "--icp-username", "21001", "--icp-password", "icp-1001")
        key = json.loads(self.rwgctl(port, "-o", "json", "hash", "show"))["key"]
        self.assertEqual(self.rwgctl(port, "config", "get", "icp.host").strip(), self.node_ip)
        self.kubectl_plugin()
        # Two relays, disjoint halves of 21000-21999.
        relays = self.kubectl("-n", NS, "logs", "rwg-media-relay-0-0") + self.kubectl(
            "-n", NS, "logs", "rwg-media-relay-1-0")
        self.assertIn("ports=21000-21499", relays)
        self.assertIn("ports=21500-21999", relays)

        t = time.monotonic()
        out = self.helm("test", "rwg", "-n", NS, "--timeout", "5m")
        self.timings["helm test"] = time.monotonic() - t
        self.assertEqual(out.count("Phase:          Succeeded"), 3, out)
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
        self.assertIn(f"<sip:1001@", answer)
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

        # An upgrade changing values: the configuration follows, sip-edge rolls.
        before = set(self.kubectl("-n", NS, "get", "pods", "-l",
                                  "app.kubernetes.io/component=sip-edge", "-o",
                                  "jsonpath={.items[*].metadata.name}").split())
        t = time.monotonic()
        self.helm("upgrade", "rwg", CHART, "-n", NS,
                  "-f", self.values(licences=5, sipEdge={"logLevel": "debug"}),
                  "--wait", "--timeout", "8m")
        self.timings["helm upgrade --wait"] = time.monotonic() - t
        # The generated secrets were kept: the same admin password logs in again.
        port = self.port_forward()
        self.rwgctl(port, "login")
        self.assertEqual(self.rwgctl(port, "config", "get", "licences.teleworker").strip(), "5")
        rwgtest.wait_until("the old sip-edge pods gone", lambda: not before & set(self.kubectl(
            "-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=sip-edge", "-o",
            "jsonpath={.items[*].metadata.name}").split()), timeout=120)
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
        for d in ("rwg-control", "rwg-sip-edge", "rwg-provisioning"):
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
        rwgtest.wait_until("the phone registers again", registers, timeout=60)

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
