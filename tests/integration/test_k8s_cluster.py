"""Integration: the single-node Kubernetes cluster of tools/k8s, end to end.

Not registered with CTest (a cold run builds Kubernetes: ~20 CPU-minutes). Run it by hand, as
root, from tests/integration:

    RWG_K8S_TEST=1 python3 -m unittest -v test_k8s_cluster

It starts a cluster of its own (`./tools/rwg k8s up` with a temporary RWG_STATE_DIR; the
binaries come from the cache, built first if missing), builds a busybox image with
tools/k8s/oci.sh and checks: the node is Ready; a pod of that image runs and answers on its
pod address, through a NodePort on 127.0.0.1 and, from another pod, by its Service's DNS name;
a pod of a curl image (the program and its shared libraries) reaches it too; a hostNetwork
pod answers on 127.0.0.1; logs and exec work. Then `down --purge` must leave the
host as it found it: no process, no pod network namespace, no cni0 or veth, no KUBE-/CNI-
iptables chain, the same sysctls.

test_service_images (when build/bin has the four services: ./tools/rwg build) runs
`./tools/rwg images` against that cluster and checks that a pod per image, running
`<service> --help` as the image's user, reaches Completed with exit code 0 and prints its usage.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
RWG = os.path.join(ROOT, "tools", "rwg")
IMAGE = "rwg.local/smoke-busybox:1"
CURL_IMAGE = "rwg.local/smoke-curl:1"
NODE_PORT = 32080
HOST_PORT = 18081
SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet",
           "net.bridge.bridge-nf-call-iptables", "vm.overcommit_memory", "kernel.panic",
           "kernel.panic_on_oops", "vm.panic_on_oom"]
BINARIES = ["containerd", "etcd", "kube-apiserver", "kube-controller-manager",
            "kube-scheduler", "kubelet", "kube-proxy", "dnsmasq", "containerd-shim-runc-v2"]

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: smoke}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: smoke, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [{{containerPort: 8080, protocol: TCP}}]
    securityContext: {{runAsUser: 10001, runAsGroup: 10001}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: smoke}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {NODE_PORT}, protocol: TCP}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: smoke}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["/bin/sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet, namespace: smoke}}
spec:
  terminationGracePeriodSeconds: 1
  hostNetwork: true
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["/bin/httpd", "-f", "-p", "127.0.0.1:{HOST_PORT}", "-h", "/www"]
"""


def run(*args, env=None, timeout=120, check=True):
    p = subprocess.run(args, env=env, timeout=timeout, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-3000:]}")
    return p.stdout


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def host_state():
    """What the cluster may change on the host and must restore."""
    state = {}
    for k in SYSCTLS:
        path = "/proc/sys/" + k.replace(".", "/")
        if os.path.exists(path):
            with open(path) as f:
                state[k] = f.read().strip()
    links = (line.split(":")[1].strip().split("@")[0]
             for line in run("ip", "-o", "link").splitlines())
    state["links"] = sorted(n for n in links if n == "cni0" or n.startswith("veth"))
    state["netns"] = sorted(n for n in run("ip", "netns", "list").split() if n.startswith("cni-"))
    for ipt in ("iptables-save", "ip6tables-save"):
        state[ipt] = sorted(line for line in run(ipt).splitlines()
                            if "KUBE" in line or "CNI" in line)
    state["processes"] = sorted(
        name for name in BINARIES
        if subprocess.run(["pgrep", "-f", f"^([^ ]*/)?{name}( |$)"],
                          stdout=subprocess.DEVNULL).returncode == 0)
    return state


@unittest.skipUnless(os.environ.get("RWG_K8S_TEST") == "1" and os.geteuid() == 0,
                     "RWG_K8S_TEST=1 and root: builds Kubernetes when it is not cached")
class K8sClusterTest(unittest.TestCase):

    def setUp(self):
        self.before = host_state()
        self.assertFalse(self.before["processes"],
                         f"cluster processes already run: {self.before['processes']}")
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-k8s-")
        self.addCleanup(self._tmp.cleanup)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("RWG_") or k == "RWG_K8S_CACHE"}
        self.env["RWG_STATE_DIR"] = self._tmp.name
        self.kubeconfig = os.path.join(self._tmp.name, "k8s", "kubeconfig")
        self.addCleanup(self.down)
        t = time.monotonic()
        out = run(RWG, "k8s", "up", env=self.env, timeout=3600)
        print(f"\nk8s up: {time.monotonic() - t:.1f}s")
        self.assertIn(self.kubeconfig, out)

    def down(self):
        run(RWG, "k8s", "down", "--purge", env=self.env, timeout=300, check=False)

    def kubectl(self, *args, timeout=120):
        return run(RWG, "k8s", "kubectl", *args, env=self.env, timeout=timeout)

    def test_cluster(self):
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
        self.assertEqual(len(nodes), 1)
        ready = [c["status"] for c in nodes[0]["status"]["conditions"] if c["type"] == "Ready"]
        self.assertEqual(ready, ["True"])

        # An image of our own, built without a registry, as a non-root user.
        t = time.monotonic()
        run("bash", "-c", f"""set -euo pipefail
            . {ROOT}/tools/k8s/oci.sh
            r=$(mktemp -d)
            trap 'rm -rf "$r"' EXIT
            oci_busybox_rootfs "$r"
            mkdir -p "$r/www"
            echo hello-from-rwg-smoke > "$r/www/index.html"
            oci_image_build "$r" {IMAGE} --user 10001:10001 --workdir /www -- /bin/sh
            c=$(mktemp -d)
            trap 'rm -rf "$r" "$c"' EXIT
            oci_rootfs_init "$c"
            oci_rootfs_add "$c" /usr/bin/curl
            oci_image_build "$c" {CURL_IMAGE} --user 10001:10001 -- /usr/bin/curl""",
            env=self.env)
        print(f"image: {time.monotonic() - t:.1f}s")

        t = time.monotonic()
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(MANIFEST)
            f.flush()
            self.kubectl("apply", "-f", f.name)
        self.kubectl("-n", "smoke", "wait", "--for=condition=Ready", "pod", "--all",
                     "--timeout=120s", timeout=150)
        print(f"pods Ready: {time.monotonic() - t:.1f}s")

        pod_ip = self.kubectl("-n", "smoke", "get", "pod", "web", "-o",
                              "jsonpath={.status.podIP}")
        self.assertTrue(pod_ip.startswith("10.244."), pod_ip)
        self.assertIn("hello-from-rwg-smoke", http_get(f"http://{pod_ip}:8080/"))
        self.assertIn("hello-from-rwg-smoke", http_get(f"http://127.0.0.1:{NODE_PORT}/"))
        self.assertIn("hello-from-rwg-smoke", http_get(f"http://127.0.0.1:{HOST_PORT}/"))

        # Cluster DNS and the Service's address, from another pod (dns-sync may lag a moment).
        # (busybox-static's wget crashes with -T: timeout is busybox's own applet.)
        deadline = time.monotonic() + 30
        while True:
            p = subprocess.run(
                [RWG, "k8s", "kubectl", "-n", "smoke", "exec", "client", "--", "timeout", "5",
                 "wget", "-qO-", "http://web.smoke.svc.cluster.local/"],
                env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=30)
            if "hello-from-rwg-smoke" in p.stdout:
                break
            self.assertLess(time.monotonic(), deadline, p.stdout)
            time.sleep(1)
        # Short name through the pod's search domains.
        out = self.kubectl("-n", "smoke", "exec", "client", "--", "timeout", "5", "wget", "-qO-",
                           "http://web/")
        self.assertIn("hello-from-rwg-smoke", out)
        # A dynamically linked program with its libraries (oci_rootfs_add), as the image's user.
        self.kubectl("-n", "smoke", "run", "curl", f"--image={CURL_IMAGE}",
                     "--image-pull-policy=Never", "--restart=Never", "--",
                     "-sS", "--max-time", "5", "http://web.smoke.svc.cluster.local/")
        deadline = time.monotonic() + 60
        while self.kubectl("-n", "smoke", "get", "pod", "curl", "-o",
                           "jsonpath={.status.phase}") not in ("Succeeded", "Failed"):
            self.assertLess(time.monotonic(), deadline, "curl pod did not finish")
            time.sleep(1)
        self.assertIn("hello-from-rwg-smoke", self.kubectl("-n", "smoke", "logs", "curl"))
        out = self.kubectl("-n", "smoke", "exec", "web", "--", "id", "-u")
        self.assertEqual(out.strip(), "10001")
        self.kubectl("-n", "smoke", "logs", "web")

        t = time.monotonic()
        run(RWG, "k8s", "down", "--purge", env=self.env, timeout=300)
        print(f"k8s down: {time.monotonic() - t:.1f}s")
        after = host_state()
        self.assertEqual(after, self.before)
        self.assertFalse(os.path.exists(self.kubeconfig))


    def test_service_images(self):
        services = ["control", "sip-edge", "media-relay", "provisioning", "sync", "tma", "ott"]
        bindir = os.path.join(os.environ.get("RWG_BUILD_DIR", os.path.join(ROOT, "build")), "bin")
        missing = [s for s in services if not os.access(os.path.join(bindir, s), os.X_OK)]
        if missing:
            self.skipTest(f"not built: {missing} (./tools/rwg build)")
        env = dict(self.env, RWG_BUILD_DIR=os.path.dirname(bindir))
        t = time.monotonic()
        out = run(RWG, "images", env=env, timeout=600)
        print(f"\nimages: {time.monotonic() - t:.1f}s")
        self.assertIn("imported into the cluster's containerd", out)
        with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
            version = next(line.split("VERSION")[1].split()[0] for line in f
                           if line.startswith("project(rwg VERSION"))
        for s in services:
            self.kubectl("run", f"img-{s}", f"--image=rwg/{s}:{version}",
                         "--image-pull-policy=Never", "--restart=Never", "--", "--help")
        deadline = time.monotonic() + 120
        for s in services:
            while True:
                pod = json.loads(self.kubectl("get", "pod", f"img-{s}", "-o", "json"))
                if pod["status"].get("phase") in ("Succeeded", "Failed"):
                    break
                self.assertLess(time.monotonic(), deadline, f"img-{s}: {pod['status']}")
                time.sleep(1)
            self.assertEqual(pod["status"]["phase"], "Succeeded", pod["status"])
            state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
            self.assertEqual(state["exitCode"], 0, state)
            self.assertIn(f"Usage: {s}", self.kubectl("logs", f"img-{s}"))


if __name__ == "__main__":
    unittest.main()
