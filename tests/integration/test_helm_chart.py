"""The Helm chart helm/rwg without a cluster: `helm lint`, `helm template` with several value
sets (what each must render), and values the schema or the chart's checks refuse, with the
message they give.

Needs the helm binary: RWG_HELM, else the one `./tools/rwg k8s deps` puts in the cache
(${RWG_K8S_CACHE:-/var/cache/rwg/k8s}/client/*/helm), else helm on PATH; `./tools/rwg test` fetches it (`./tools/k8s/k8s client`).
Installing on a real cluster: test_k8s_chart.
"""
import base64
import concurrent.futures
import glob
import os
import shutil
import subprocess
import tempfile
import unittest

import yaml

import netpol
import rwgtest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
CHART = os.path.join(ROOT, "helm", "rwg")


def find_helm():
    if os.environ.get("RWG_HELM"):
        return os.environ["RWG_HELM"]
    cache = os.environ.get("RWG_K8S_CACHE", "/var/cache/rwg/k8s")
    found = sorted(glob.glob(os.path.join(cache, "client", "*", "helm")))
    if found:
        return found[-1]
    return shutil.which("helm")


HELM = find_helm()


def docs(text):
    """The rendered manifests as (kind, name, text) triples (no YAML parser needed)."""
    out = []
    for part in text.split("\n---\n"):
        kind = name = None
        for line in part.splitlines():
            if line.startswith("kind:") and kind is None:
                kind = line.split(":", 1)[1].strip()
            if line.startswith("  name:") and name is None:
                name = line.split(":", 1)[1].strip()
        if kind:
            out.append((kind, name, part))
    return out


class ChartCase(unittest.TestCase):
    """helm run with a private home, and `helm template` of the chart."""

    def helm(self, *args, check=True):
        env = dict(os.environ, HELM_CACHE_HOME=self.tmp, HELM_CONFIG_HOME=self.tmp,
                   HELM_DATA_HOME=self.tmp, KUBECONFIG=os.path.join(self.tmp, "none"))
        p = subprocess.run([HELM, *args], env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {p.returncode}:\n{p.stdout}")
        return p

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-helm-")
        self.tmp = self._tmp.name
        self.addCleanup(self._tmp.cleanup)

    def template(self, *sets, kube="1.20.2", values=None):
        args = ["template", "r", CHART, "--namespace", "ns", "--kube-version", kube]
        for s in sets:
            args += ["--set", s]
        if values:
            path = os.path.join(self.tmp, "values.yaml")
            with open(path, "w") as f:
                f.write(values)
            args += ["-f", path]
        return docs(self.helm(*args).stdout)


class HelmChartTest(ChartCase):

    def refused(self, *sets, values=None):
        args = ["template", "r", CHART]
        for s in sets:
            args += ["--set", s]
        if values:
            path = os.path.join(self.tmp, "bad.yaml")
            with open(path, "w") as f:
                f.write(values)
            args += ["-f", path]
        p = self.helm(*args, check=False)
        self.assertNotEqual(p.returncode, 0, f"accepted: {sets} {values}")
        return p.stdout

    def test_lint(self):
        out = self.helm("lint", CHART).stdout
        self.assertIn("0 chart(s) failed", out)
        self.assertNotIn("[WARNING]", out)
        self.assertNotIn("[ERROR]", out)
        out = self.helm("lint", CHART, "--strict", "--set", "expose.type=NodePort", "--set",
                        "ports.sipTls=30561", "--set", "ports.https=30445").stdout
        self.assertIn("0 chart(s) failed", out)

    def test_defaults(self):
        d = self.template()
        kinds = {(k, n) for k, n, _ in d}
        for want in [("Deployment", "r-rwg-control"), ("Deployment", "r-rwg-sip-edge"),
                     ("Deployment", "r-rwg-provisioning"), ("StatefulSet", "r-rwg-media-relay-0"),
                     ("StatefulSet", "r-rwg-redis"), ("Service", "r-rwg-sip"),
                     ("Service", "r-rwg-https"), ("Secret", "r-rwg-secrets"),
                     ("Secret", "r-rwg-tls-public"), ("Secret", "r-rwg-tls-internal"),
                     ("Secret", "r-rwg-redis"), ("PodDisruptionBudget", "r-rwg-sip-edge"),
                     ("NetworkPolicy", "r-rwg-sip-edge"), ("Job", "r-rwg-configure"),
                     ("Pod", "r-rwg-test-health"), ("Pod", "r-rwg-test-register"),
                     ("Pod", "r-rwg-test-provisioning"), ("Deployment", "r-rwg-sync"),
                     ("Service", "r-rwg-sync"), ("Service", "r-rwg-sync-https"),
                     ("Secret", "r-rwg-tls-sync"), ("NetworkPolicy", "r-rwg-sync"),
                     ("Pod", "r-rwg-test-sync"), ("Deployment", "r-rwg-tma"),
                     ("Service", "r-rwg-tma"), ("NetworkPolicy", "r-rwg-tma"),
                     ("ConfigMap", "r-rwg-dashboard-tma")]:
            self.assertIn(want, kinds)
        text = "\n".join(t for _, _, t in d)
        # Kubernetes 1.20: the beta PodDisruptionBudget API; every port has its protocol.
        self.assertIn("apiVersion: policy/v1beta1", text)
        for line in text.splitlines():
            if "containerPort:" in line:
                self.assertIn("protocol:", line)
        for kind, name, t in d:
            if kind == "Service":
                ports = t.split("ports:")[1]
                self.assertEqual(ports.count("name:"), ports.count("protocol:"), f"{name}:\n{t}")
        # No service exposes /metrics without a port named metrics.
        for svc in ("control", "sip-edge", "provisioning", "media-relay", "sync", "tma"):
            t = next(t for k, n, t in d if k == "Service" and n == f"r-rwg-{svc}")
            self.assertIn("name: metrics", t)
        # Generated: the at-rest key is 64 hex digits; no pod IP is advertised to phones.
        edge = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-sip-edge")
        self.assertIn("--sip-advertise-host=$(NODE_IP)", edge)
        self.assertIn("type: LoadBalancer", next(t for k, n, t in d if n == "r-rwg-sip"))
        relay = next(t for k, n, t in d if n == "r-rwg-media-relay-0")
        self.assertIn("hostNetwork: true", relay)
        self.assertIn("--media-address=$(NODE_IP)", relay)
        self.assertIn("--pool-part=1/1", relay)
        for kind, name, t in d:
            if kind in ("Deployment", "StatefulSet"):
                self.assertIn("readOnlyRootFilesystem: true", t, name)
                self.assertIn("drop: [ALL]", t, name)
                self.assertIn("runAsNonRoot: true", t, name)
                self.assertNotIn("runAsUser: 0", t, name)
        # Observability is off but dashboards would be picked up.
        self.assertNotIn("ServiceMonitor", {k for k, _, _ in d})

    def test_sync(self):
        d = self.template()
        sync = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-sync")
        for arg in ("--listen=0.0.0.0:8443", "--grpc-listen=0.0.0.0:50055",
                    "--metrics-listen=0.0.0.0:9465", "--https-cert-file=/etc/rwg/sync-tls/tls.crt",
                    "--https-key-file=/etc/rwg/sync-tls/tls.key",
                    "--secret-key-file=/etc/rwg/secrets/secret-key",
                    "--redis-password-file=/etc/rwg/redis/password",
                    "--redis-address=r-rwg-redis.ns.svc.cluster.local:6379",
                    "--tls-cert-file=/etc/rwg/internal/tls.crt"):
            self.assertIn(arg, sync)
        self.assertIn("image: rwg/sync:0.1.0", sync)
        self.assertIn("replicas: 1\n", sync)
        self.assertIn("secretName: r-rwg-tls-sync", sync)
        self.assertIn("value: 127.0.0.1:50055", sync)  # rwgctl health of the probes
        self.assertIn("command: [/usr/local/bin/rwgctl, --timeout, \"4\", health]", sync)
        self.assertIn("type: RuntimeDefault", sync)
        self.assertIn("automountServiceAccountToken: false", sync)
        # Of rwg's Secret, only the at-rest key: no admin password, no tokens.
        self.assertIn("items: [{key: secret-key, path: secret-key}]", sync)
        self.assertIn("mountPath: /etc/rwg/redis", sync)
        # The iPBX's Service: expose.type by default, the source address kept.
        public = next(t for k, n, t in d if k == "Service" and n == "r-rwg-sync-https")
        self.assertIn("type: LoadBalancer", public)
        self.assertIn("externalTrafficPolicy: Local", public)
        self.assertIn("port: 8443", public)
        self.assertNotIn("metrics", public)
        # Its own certificate, naming its Services; the internal one names its gRPC Service.
        tls = next(t for k, n, t in d if k == "Secret" and n == "r-rwg-tls-sync")
        self.assertIn("kubernetes.io/tls", tls)
        self.assertIn("ca.crt:", tls)
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertIn("r-rwg-sync.ns.svc.cluster.local:50055", health)
        test = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-sync")
        self.assertIn("https://r-rwg-sync-https.ns.svc.cluster.local:8443", test)
        self.assertNotIn(("PodDisruptionBudget", "r-rwg-sync"), {(k, n) for k, n, _ in d})
        # Scraped by the ServiceMonitor with the others.
        d = self.template("metrics.serviceMonitor.enabled=true")
        monitor = next(t for k, n, t in d if k == "ServiceMonitor")
        self.assertIn("media-relay, sync, tma, ott]", monitor)

        # Settings: a NodePort of its own, a given certificate, more replicas.
        d = self.template(values="""
sync:
  replicas: 2
  port: 9443
  service: {type: NodePort, nodePort: 30843}
  tls: {existingSecret: sync-cert}
  allowedSources: [192.0.2.0/24]
  extraArgs: [--max-wait-seconds=30]
""")
        kinds = {(k, n) for k, n, _ in d}
        self.assertNotIn(("Secret", "r-rwg-tls-sync"), kinds)
        self.assertIn(("PodDisruptionBudget", "r-rwg-sync"), kinds)
        sync = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-sync")
        self.assertIn("replicas: 2\n", sync)
        self.assertIn("--listen=0.0.0.0:9443", sync)
        self.assertIn("--max-wait-seconds=30", sync)
        self.assertIn("secretName: sync-cert", sync)
        public = next(t for k, n, t in d if k == "Service" and n == "r-rwg-sync-https")
        self.assertIn("type: NodePort", public)
        self.assertIn("nodePort: 30843", public)
        self.assertIn("port: 9443", public)
        np = next(t for k, n, t in d if k == "NetworkPolicy" and n == "r-rwg-sync")
        self.assertIn("cidr: 192.0.2.0/24", np)
        self.assertNotIn("0.0.0.0/0", np)
        # ClusterIP (behind one's own proxy): no node port, no traffic policy.
        d = self.template("sync.service.type=ClusterIP", "sync.service.nodePort=30843")
        public = next(t for k, n, t in d if k == "Service" and n == "r-rwg-sync-https")
        self.assertIn("type: ClusterIP", public)
        self.assertNotIn("nodePort", public)
        self.assertNotIn("externalTrafficPolicy", public)

        self.assertIn(("ConfigMap", "r-rwg-dashboard-sync"), kinds)
        # Disabled: nothing of sync (its dashboard neither), and the tests do not look for it.
        d = self.template("sync.enabled=false", "sync.replicas=2")
        self.assertEqual([(k, n) for k, n, t in d if "sync" in (n or "")], [])
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertNotIn("50055", health)
        self.assertNotIn("component: sync", "\n".join(t for _, _, t in d))

    def test_tma(self):
        d = self.template()
        tma = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-tma")
        for arg in ("--grpc-listen=0.0.0.0:50056", "--metrics-listen=0.0.0.0:9466",
                    "--tls-cert-file=/etc/rwg/internal/tls.crt",
                    "--tls-key-file=/etc/rwg/internal/tls.key",
                    "--secret-key-file=/etc/rwg/secrets/secret-key",
                    "--redis-password-file=/etc/rwg/redis/password",
                    "--redis-address=r-rwg-redis.ns.svc.cluster.local:6379",
                    # Servers of kind local: provisioning's store API, its token, the internal CA.
                    "--store-address=r-rwg-provisioning.ns.svc.cluster.local:50054",
                    "--store-token-file=/etc/rwg/secrets/store-token",
                    "--store-ca-file=/etc/rwg/internal/ca.crt",
                    "--parallel-transfers=4", "--lease-seconds=30", "--log-level=info"):
            self.assertIn(arg, tma)
        self.assertIn("image: rwg/tma:0.1.0", tma)
        self.assertIn("replicas: 1\n", tma)
        self.assertIn("value: 127.0.0.1:50056", tma)  # rwgctl health of the probes
        self.assertIn("command: [/usr/local/bin/rwgctl, --timeout, \"4\", health]", tma)
        self.assertIn("port: grpc", tma)  # liveness
        self.assertIn("type: RuntimeDefault", tma)
        self.assertIn("readOnlyRootFilesystem: true", tma)
        self.assertIn("drop: [ALL]", tma)
        self.assertIn("automountServiceAccountToken: false", tma)
        # Of rwg's Secret only the at-rest key and the store's token.
        self.assertIn("items: [{key: secret-key, path: secret-key}, "
                      "{key: store-token, path: store-token}]", tma)
        self.assertNotIn("admin-password", tma)
        self.assertNotIn("relay-token", tma)
        svc = next(t for k, n, t in d if k == "Service" and n == "r-rwg-tma")
        self.assertIn("type: ClusterIP", svc)
        self.assertIn("{name: grpc, port: 50056, targetPort: grpc, protocol: TCP}", svc)
        self.assertIn("{name: metrics, port: 9466, targetPort: metrics, protocol: TCP}", svc)
        # helm test's health pod asks it; the internal certificate names its Service.
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertIn("r-rwg-tma.ns.svc.cluster.local:50056", health)
        internal = next(t for k, n, t in d if k == "Secret" and n == "r-rwg-tls-internal")
        cert = yaml.safe_load(internal)["data"]["tls.crt"]
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=base64.b64decode(cert),
                              stdout=subprocess.PIPE, check=True).stdout.decode()
        for name in ("r-rwg-tma", "r-rwg-tma.ns.svc", "r-rwg-tma.ns.svc.cluster.local",
                     "r-rwg-provisioning.ns.svc.cluster.local"):
            self.assertIn(f"DNS:{name},", text)
        self.assertNotIn(("PodDisruptionBudget", "r-rwg-tma"), {(k, n) for k, n, _ in d})
        board = next(t for k, n, t in d if k == "ConfigMap" and n == "r-rwg-dashboard-tma")
        self.assertIn('"uid": "rwg-tma"', board)

        # Settings: more replicas (a PodDisruptionBudget), the runner's values, more flags.
        d = self.template(values="""
tma:
  replicas: 3
  parallelTransfers: 8
  leaseSeconds: 60
  logLevel: debug
  extraArgs: [--ftp-connect-timeout-seconds=20, --max-file-mib=256]
  resources: {limits: {memory: 1Gi}}
""")
        tma = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-tma")
        self.assertIn("replicas: 3\n", tma)
        for arg in ("--parallel-transfers=8", "--lease-seconds=60", "--log-level=debug",
                    "--ftp-connect-timeout-seconds=20", "--max-file-mib=256", "memory: 1Gi"):
            self.assertIn(arg, tma)
        self.assertIn(("PodDisruptionBudget", "r-rwg-tma"), {(k, n) for k, n, _ in d})
        self.assertNotIn("name: ftp-ca", tma)
        self.assertNotIn(("ConfigMap", "r-rwg-tma-ftp-ca"), {(k, n) for k, n, _ in d})

        # An ftps server's own CA: a ConfigMap mounted at /etc/rwg/ftp-ca, the pods restarted
        # when it changes.
        ca = ("tma:\n  caFiles:\n    lyon-ca.pem: |\n      -----BEGIN CERTIFICATE-----\n"
              "      MIIB{}\n      -----END CERTIFICATE-----\n")
        d = self.template(values=ca.format("aa"))
        cm = next(t for k, n, t in d if k == "ConfigMap" and n == "r-rwg-tma-ftp-ca")
        self.assertIn("lyon-ca.pem: |", cm)
        tma = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-tma")
        self.assertIn("{name: ftp-ca, mountPath: /etc/rwg/ftp-ca, readOnly: true}", tma)
        self.assertIn("name: r-rwg-tma-ftp-ca", tma)
        first = [line for line in tma.splitlines() if "checksum/ftp-ca" in line]
        tma = next(t for k, n, t in self.template(values=ca.format("bb"))
                   if k == "Deployment" and n == "r-rwg-tma")
        self.assertNotEqual(first, [line for line in tma.splitlines() if "checksum/ftp-ca" in line])

        # Disabled: nothing of tma, and neither the tests nor the dashboards look for it.
        d = self.template("tma.enabled=false", "tma.replicas=2",
                          "metrics.serviceMonitor.enabled=true")
        self.assertEqual([(k, n) for k, n, t in d if "tma" in (n or "")], [])
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertNotIn("50056", health)
        self.assertNotIn("component: tma", "\n".join(t for _, _, t in d))
        self.assertIn(("ConfigMap", "r-rwg-dashboard-sync"), {(k, n) for k, n, _ in d})

    def test_ott(self):
        # Off by default: nothing of ott, and neither the tests nor the dashboards look for it.
        d = self.template("metrics.serviceMonitor.enabled=true")
        self.assertEqual([(k, n) for k, n, t in d if "ott" in (n or "")], [])
        self.assertNotIn("component: ott", "\n".join(t for _, _, t in d))
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertNotIn("50057", health)

        d = self.template(values="""
ott:
  enabled: true
  certificates:
    - {fqdn: portal.example.com, secretName: portal-tls}
    - {fqdn: webclient.example.com, secretName: webclient-tls}
metrics: {serviceMonitor: {enabled: true}}
""")
        kinds = {(k, n) for k, n, _ in d}
        for want in [("Deployment", "r-rwg-ott"), ("Service", "r-rwg-ott"),
                     ("Service", "r-rwg-ott-https"), ("NetworkPolicy", "r-rwg-ott"),
                     ("ConfigMap", "r-rwg-dashboard-ott")]:
            self.assertIn(want, kinds)
        ott = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-ott")
        for arg in ("--listen=0.0.0.0:8443", "--cert-dir=/etc/rwg/ott-certs",
                    "--grpc-listen=0.0.0.0:50057", "--metrics-listen=0.0.0.0:9467",
                    "--tls-cert-file=/etc/rwg/internal/tls.crt",
                    "--tls-key-file=/etc/rwg/internal/tls.key",
                    "--redis-password-file=/etc/rwg/redis/password",
                    "--redis-address=r-rwg-redis.ns.svc.cluster.local:6379",
                    "--threads=2", "--log-level=info"):
            self.assertIn(arg, ott)
        # None of rwg's Secret: ott takes no at-rest key (it would refuse the flag).
        self.assertNotIn("--secret-key-file", ott)
        self.assertNotIn("r-rwg-secrets", ott)
        self.assertNotIn("admin-password", ott)
        self.assertIn("image: rwg/ott:0.1.0", ott)
        self.assertIn("replicas: 1\n", ott)
        self.assertIn("value: 127.0.0.1:50057", ott)  # rwgctl health of the probes
        self.assertIn("command: [/usr/local/bin/rwgctl, --timeout, \"4\", health]", ott)
        self.assertIn("port: grpc", ott)  # liveness
        self.assertIn("{name: https, containerPort: 8443, protocol: TCP}", ott)
        self.assertIn("type: RuntimeDefault", ott)
        self.assertIn("readOnlyRootFilesystem: true", ott)
        self.assertIn("drop: [ALL]", ott)
        self.assertIn("automountServiceAccountToken: false", ott)
        # Each certificate's Secret at /etc/rwg/ott-certs/<fqdn>/tls.crt and tls.key: a
        # projected volume (no subPath), so that a renewed Secret reaches the running pods.
        pod = yaml.safe_load(ott)["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ott-certs")
        self.assertEqual(mount, {"name": "ott-certs", "mountPath": "/etc/rwg/ott-certs",
                                 "readOnly": True})
        volume = next(v for v in pod["volumes"] if v["name"] == "ott-certs")
        self.assertEqual(volume["projected"]["sources"], [
            {"secret": {"name": "portal-tls", "items": [
                {"key": "tls.crt", "path": "portal.example.com/tls.crt"},
                {"key": "tls.key", "path": "portal.example.com/tls.key"}]}},
            {"secret": {"name": "webclient-tls", "items": [
                {"key": "tls.crt", "path": "webclient.example.com/tls.crt"},
                {"key": "tls.key", "path": "webclient.example.com/tls.key"}]}}])
        # Browsers reach 443 of the public Service (expose.type, the browser's address kept);
        # the admin API and the metrics only the ClusterIP Service, the one kubectl rwg finds.
        public = yaml.safe_load(next(t for k, n, t in d if k == "Service" and
                                     n == "r-rwg-ott-https"))
        self.assertEqual(public["spec"]["type"], "LoadBalancer")
        self.assertEqual(public["spec"]["externalTrafficPolicy"], "Local")
        self.assertEqual(public["spec"]["ports"], [{"name": "https", "port": 443,
                                                    "targetPort": "https", "protocol": "TCP"}])
        self.assertEqual(public["metadata"]["labels"]["app.kubernetes.io/component"], "ott-https")
        self.assertEqual(public["spec"]["selector"]["app.kubernetes.io/component"], "ott")
        svc = next(t for k, n, t in d if k == "Service" and n == "r-rwg-ott")
        self.assertIn("type: ClusterIP", svc)
        self.assertIn("app.kubernetes.io/component: ott\n", svc)
        self.assertIn("{name: grpc, port: 50057, targetPort: grpc, protocol: TCP}", svc)
        self.assertIn("{name: metrics, port: 9467, targetPort: metrics, protocol: TCP}", svc)
        # helm test's health pod asks it; the internal certificate names its Service; the
        # ServiceMonitor scrapes it; its dashboard is there.
        health = next(t for k, n, t in d if k == "Pod" and n == "r-rwg-test-health")
        self.assertIn("r-rwg-ott.ns.svc.cluster.local:50057", health)
        internal = next(t for k, n, t in d if k == "Secret" and n == "r-rwg-tls-internal")
        cert = yaml.safe_load(internal)["data"]["tls.crt"]
        text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=base64.b64decode(cert),
                              stdout=subprocess.PIPE, check=True).stdout.decode()
        for name in ("r-rwg-ott", "r-rwg-ott.ns.svc", "r-rwg-ott.ns.svc.cluster.local"):
            self.assertIn(f"DNS:{name},", text)
        monitor = next(t for k, n, t in d if k == "ServiceMonitor")
        self.assertIn("sync, tma, ott]", monitor)
        board = next(t for k, n, t in d if k == "ConfigMap" and n == "r-rwg-dashboard-ott")
        self.assertIn('"uid": "rwg-ott"', board)
        self.assertNotIn(("PodDisruptionBudget", "r-rwg-ott"), kinds)
        notes = self.helm("install", "r", CHART, "--namespace", "ns", "--dry-run",
                          "--set", "ott.enabled=true", "--set",
                          "ott.certificates[0].fqdn=portal.example.com", "--set",
                          "ott.certificates[0].secretName=portal-tls").stdout
        self.assertIn("kubectl rwg -n ns ott domain list", notes)
        self.assertIn("portal.example.com (portal-tls)", notes)

        # Settings: replicas (a PodDisruptionBudget), a NodePort, the applications' CAs, more
        # flags; no certificate yet: an empty directory.
        ca = """
ott:
  enabled: true
  replicas: 2
  threads: 4
  logLevel: debug
  extraArgs: [--session-minutes=240]
  service: {type: NodePort, nodePort: 30443, annotations: {a: b}}
  caFiles:
    manager-ca.pem: |
      -----BEGIN CERTIFICATE-----
      MIIBxx
      -----END CERTIFICATE-----
"""
        d = self.template(values=ca.replace("xx", "aa"))
        ott = next(t for k, n, t in d if k == "Deployment" and n == "r-rwg-ott")
        self.assertIn("replicas: 2\n", ott)
        for arg in ("--threads=4", "--log-level=debug", "--session-minutes=240",
                    "{name: ott-ca, mountPath: /etc/rwg/ott-ca, readOnly: true}",
                    "name: r-rwg-ott-ca"):
            self.assertIn(arg, ott)
        pod = yaml.safe_load(ott)["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "ott-certs")
        self.assertIn("emptyDir", volume)
        self.assertIn(("PodDisruptionBudget", "r-rwg-ott"), {(k, n) for k, n, _ in d})
        cm = next(t for k, n, t in d if k == "ConfigMap" and n == "r-rwg-ott-ca")
        self.assertIn("manager-ca.pem: |", cm)
        public = yaml.safe_load(next(t for k, n, t in d if k == "Service" and
                                     n == "r-rwg-ott-https"))
        self.assertEqual(public["spec"]["type"], "NodePort")
        self.assertEqual(public["spec"]["ports"][0]["nodePort"], 30443)
        self.assertEqual(public["metadata"]["annotations"], {"a": "b"})
        first = [line for line in ott.splitlines() if "checksum/ott-ca" in line]
        ott = next(t for k, n, t in self.template(values=ca.replace("xx", "bb"))
                   if k == "Deployment" and n == "r-rwg-ott")
        self.assertNotEqual(first, [line for line in ott.splitlines() if "checksum/ott-ca" in line])
        # The same FQDN twice is refused.
        self.assertIn("ott.certificates: portal.example.com is listed twice", self.refused(
            values="ott:\n  enabled: true\n  certificates:\n"
                   "    - {fqdn: portal.example.com, secretName: a}\n"
                   "    - {fqdn: portal.example.com, secretName: b}\n"))

    def test_current_kubernetes(self):
        d = self.template(kube="1.30.0", values="control: {replicas: 2}\n")
        text = "\n".join(t for _, _, t in d)
        self.assertIn("apiVersion: policy/v1\n", text)
        self.assertNotIn("policy/v1beta1", text)

    def test_nodeport_relays_external_redis(self):
        d = self.template(values="""
publicName: rwg.example.com
publicAddress: 203.0.113.10
icp: {host: 10.1.2.3, sipPort: 5060}
expose: {type: NodePort}
ports: {sipTls: 30561, sipTcp: 30560, https: 30445}
sipEdge: {tcp: true}
mediaRelay: {instances: 3, portMin: 20000, portMax: 25999, realtime: true}
redis: {enabled: false, external: {address: "redis.example:6379", passwordSecret: {name: rp}}}
secrets: {existingSecret: mine}
tls: {public: {existingSecret: pub}, internal: {existingSecret: int}}
metrics: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true, force: true}}
""")
        kinds = {(k, n) for k, n, _ in d}
        self.assertNotIn(("StatefulSet", "r-rwg-redis"), kinds)
        self.assertNotIn(("Secret", "r-rwg-secrets"), kinds)
        self.assertNotIn(("Secret", "r-rwg-tls-public"), kinds)
        for i in range(3):
            relay = next(t for k, n, t in d if n == f"r-rwg-media-relay-{i}")
            self.assertIn(f"--pool-part={i + 1}/3", relay)
            self.assertIn(f"--grpc-listen=0.0.0.0:{50100 + i}", relay)
            self.assertIn("--media-address=203.0.113.10", relay)
            self.assertIn('add: ["SYS_NICE"]', relay)
            # SYS_NICE takes effect only for UID 0 (no ambient capabilities in Kubernetes).
            self.assertIn("runAsUser: 0", relay)
            self.assertIn("runAsNonRoot: false", relay)
            self.assertIn("drop: [ALL]", relay)
            self.assertIn("allowPrivilegeEscalation: false", relay)
        sip = next(t for k, n, t in d if n == "r-rwg-sip")
        self.assertIn("nodePort: 30561", sip)
        self.assertIn("nodePort: 30560", sip)
        self.assertIn("externalTrafficPolicy: Local", sip)
        edge = next(t for k, n, t in d if n == "r-rwg-sip-edge" and k == "Deployment")
        self.assertIn("--redis-address=redis.example:6379", edge)
        self.assertIn("--sip-advertise-host=rwg.example.com", edge)
        self.assertIn("secretName: mine", edge)
        np = next(t for k, n, t in d if k == "NetworkPolicy" and n == "r-rwg-sip-edge")
        self.assertIn("cidr: 10.1.2.3/32", np)
        self.assertIn(("ServiceMonitor", "r-rwg"), kinds)
        job = next(t for k, n, t in d if k == "Job")
        self.assertIn("icp.host=10.1.2.3", job)
        self.assertIn("public_name=rwg.example.com", job)

    def test_external_redis_over_tls(self):
        """Every service that reaches Redis gets the TLS flags and the two Secrets, mounted
        whole (a rotated certificate reaches the pods); the chart's own Redis has no TLS."""
        d = self.template(values="""
redis:
  enabled: false
  external:
    address: "redis.example:6380"
    passwordSecret: {name: rp}
    tls: {enabled: true, caSecret: {name: redis-ca, key: ca.pem}, clientSecret: redis-client,
          serverName: redis.example}
sync: {enabled: true}
tma: {enabled: true}
ott: {enabled: true}
""")
        workloads = [(k, n, t) for k, n, t in d
                     if k in ("Deployment", "StatefulSet") and "--redis-address" in t]
        names = {n for _, n, _ in workloads}
        for c in ("control", "sip-edge", "provisioning", "sync", "tma", "ott",
                  "media-relay-0"):
            self.assertIn(f"r-rwg-{c}", names)
        for _, n, t in workloads:
            for flag in ("--redis-address=redis.example:6380", "--redis-tls",
                         "--redis-ca-file=/etc/rwg/redis-tls/ca/ca.crt",
                         "--redis-cert-file=/etc/rwg/redis-tls/client/tls.crt",
                         "--redis-key-file=/etc/rwg/redis-tls/client/tls.key",
                         "--redis-tls-server-name=redis.example",
                         "--redis-password-file=/etc/rwg/redis/password"):
                self.assertIn(flag, t, n)
            self.assertIn("secretName: redis-ca", t, n)
            self.assertIn("items: [{key: ca.pem, path: ca.crt}]", t, n)
            self.assertIn("secretName: redis-client", t, n)
            self.assertIn("mountPath: /etc/rwg/redis-tls/client", t, n)
            self.assertNotIn("subPath", t, n)
        # TLS is for an external Redis only: with the chart's Redis the flags are not given.
        d = self.template(values="redis: {external: {tls: {enabled: true}}}\n")
        self.assertFalse(any("--redis-tls" in t for _, _, t in d))
        self.assertIn("/redis/external/tls/serverName", self.refused(
            values="redis: {enabled: false, external: {address: 'r:1', "
                   "tls: {enabled: true, serverName: 'a b'}}}\n"))

    def test_redis_with_sentinel(self):
        """redis.sentinel: Redis pods (a master and its replicas, each by DNS name) and the
        sentinels; every service asks the sentinels (with the Redis password) instead of one
        address; each pod's role and each sentinel's writable configuration come from an init
        step that asks the sentinels first; the NetworkPolicies let exactly that through."""
        d = self.template(values="""
redis:
  sentinel: {enabled: true, replicas: 2, sentinels: 5, quorum: 3, masterName: office}
sync: {enabled: true}
tma: {enabled: true}
ott: {enabled: true}
""")
        sentinels = ",".join(
            f"r-rwg-redis-sentinel-{i}.r-rwg-redis-sentinel.ns.svc.cluster.local:26379"
            for i in range(5))
        workloads = {n: t for k, n, t in d if k in ("Deployment", "StatefulSet")
                     and "--redis-sentinels" in t}
        for c in ("control", "sip-edge", "provisioning", "sync", "tma", "ott", "media-relay-0"):
            t = workloads[f"r-rwg-{c}"]
            self.assertIn(f"--redis-sentinels={sentinels}", t, c)
            self.assertIn("--redis-master-name=office", t, c)
            self.assertIn("--redis-password-file=/etc/rwg/redis/password", t, c)
            # The sentinels require the same password.
            self.assertIn("--redis-sentinel-password-file=/etc/rwg/redis/password", t, c)
            self.assertNotIn("--redis-address", t, c)
        redis = yaml.safe_load(next(t for k, n, t in d if k == "StatefulSet" and n == "r-rwg-redis"))
        self.assertEqual(redis["spec"]["replicas"], 3)
        self.assertEqual(redis["spec"]["serviceName"], "r-rwg-redis-headless")
        role = redis["spec"]["template"]["spec"]["initContainers"][0]
        self.assertEqual(role["command"], ["/usr/bin/busybox", "sh", "-c"])
        self.assertIn("SENTINEL get-master-addr-by-name office", role["args"][0])
        self.assertIn('master="r-rwg-redis-0.r-rwg-redis-headless.ns.svc.cluster.local 6379"',
                      role["args"][0])
        self.assertIn('REDIS_PODS="' + " ".join(
            f"r-rwg-redis-{i}.r-rwg-redis-headless.ns.svc.cluster.local" for i in range(3)) + '"',
            role["args"][0])
        self.assertEqual(redis["spec"]["template"]["spec"]["containers"][0]["args"][0],
                         "/conf/redis.conf")
        sentinel = yaml.safe_load(next(
            t for k, n, t in d if k == "StatefulSet" and n == "r-rwg-redis-sentinel"))
        self.assertEqual(sentinel["spec"]["replicas"], 5)
        script = sentinel["spec"]["template"]["spec"]["initContainers"][0]["args"][0]
        self.assertIn('echo "sentinel monitor office $master 3"', script)
        self.assertIn("sentinel auth-pass office $PASSWORD", script)
        self.assertIn("sentinel myid $(printf '%s' 'ns/'\"$POD_NAME\" | sha1sum", script)
        # A copy of the mounted (read-only, 0440) configuration that the step can append to.
        self.assertIn("cat /etc/redis/redis.conf > /conf/redis.conf", role["args"][0])
        self.assertEqual(sentinel["spec"]["template"]["spec"]["containers"][0]["args"],
                         ["/conf/sentinel.conf", "--sentinel"])
        for pod in (redis, sentinel):
            for c in (pod["spec"]["template"]["spec"]["containers"]
                      + pod["spec"]["template"]["spec"]["initContainers"]):
                self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], c["name"])
        services = {n: yaml.safe_load(t) for k, n, t in d if k == "Service"}
        self.assertNotIn("r-rwg-redis", services)  # no Service that could reach a replica
        for n in ("r-rwg-redis-headless", "r-rwg-redis-sentinel"):
            self.assertEqual(services[n]["spec"]["clusterIP"], "None")
            self.assertTrue(services[n]["spec"]["publishNotReadyAddresses"])
        secret = yaml.safe_load(next(t for k, n, t in d if k == "Secret" and n == "r-rwg-redis"))
        conf = base64.b64decode(secret["data"]["redis.conf"]).decode()
        password = base64.b64decode(secret["data"]["password"]).decode()
        self.assertEqual(conf, f"requirepass {password}\nmasterauth {password}\n")

        # redis.auth false: no password for Redis nor the sentinels, nowhere.
        d = self.template("redis.sentinel.enabled=true", "redis.auth=false")
        self.assertNotIn("r-rwg-redis", [n for k, n, _ in d if k == "Secret"])
        for k, n, t in d:
            if k in ("Deployment", "StatefulSet") and "redis" in t:
                self.assertNotIn("--redis-password-file", t, n)
                self.assertNotIn("--redis-sentinel-password-file", t, n)
                self.assertNotIn("secretName: r-rwg-redis\n", t, n)
        sentinel = yaml.safe_load(next(
            t for k, n, t in d if k == "StatefulSet" and n == "r-rwg-redis-sentinel"))
        self.assertNotIn("password", str(sentinel["spec"]["template"]["spec"]["volumes"]))

        pods, np = self.pods_and_policies("redis.sentinel.enabled=true",
                                          "networkPolicy.nodeCIDRs={192.168.50.0/24}")
        redis, sentinel, edge = pods["redis"], pods["redis-sentinel"], pods["sip-edge"]
        node, elsewhere = netpol.Outside("192.168.50.7"), netpol.Outside("198.51.100.1")
        foreign = netpol.Pod("ns", {"app": "other"}, {"kubernetes.io/metadata.name": "ns"})
        dns = netpol.Pod("kube-system", {"k8s-app": "kube-dns"},
                         {"kubernetes.io/metadata.name": "kube-system"})
        cases = [
            (edge, sentinel, 26379, True), (pods["control"], sentinel, 26379, True),
            (node, sentinel, 26379, True), (edge, redis, 6379, True),
            (redis, redis, 6379, True), (redis, sentinel, 26379, True), (redis, dns, 53, True),
            (sentinel, redis, 6379, True), (sentinel, sentinel, 26379, True),
            (sentinel, dns, 53, True),
            (foreign, sentinel, 26379, False), (elsewhere, sentinel, 26379, False),
            (sentinel, elsewhere, 443, False), (redis, elsewhere, 6379, False),
            (sentinel, edge, 5070, False), (redis, pods["control"], 50051, False),
            (edge, sentinel, 6379, False),
        ]
        wrong = [f"{netpol.name(s)} -> {netpol.name(t)}:{port} should be "
                 f"{'allowed' if want else 'denied'}" for s, t, port, want in cases
                 if np.allows(s, t, port, "TCP" if port != 53 else "UDP") != want]
        self.assertEqual(wrong, [])
        self.assertIn("/redis/sentinel/sentinels", self.refused(
            values="redis: {sentinel: {enabled: true, sentinels: 2}}\n"))
        self.assertIn("quorum (4) above the number of sentinels (3)", self.refused(
            values="redis: {sentinel: {enabled: true, quorum: 4}}\n"))

    def pods_and_policies(self, *sets):
        """The chart's pods by component (netpol.Pod) and its NetworkPolicies, rendered in
        namespace ns."""
        out = self.helm("template", "r", CHART, "--namespace", "ns", "--kube-version", "1.20.2",
                        *[a for s in sets for a in ("--set", s)]).stdout
        manifests = [m for m in yaml.safe_load_all(out) if m]
        pods = {}
        for m in manifests:
            if m["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                continue
            t = m["spec"]["template"]
            labels = t["metadata"]["labels"]
            pods[labels["app.kubernetes.io/component"]] = netpol.Pod(
                "ns", labels, {"kubernetes.io/metadata.name": "ns"},
                bool(t["spec"].get("hostNetwork")))
        return pods, netpol.Policies(manifests, "ns")

    def test_network_policies_connection_by_connection(self):
        """What the seed's port list allows, and nothing else, as a conforming CNI applies the
        chart's NetworkPolicies (the test cluster's bridge CNI enforces none)."""
        pods, np = self.pods_and_policies("icp.host=10.1.2.3", "mediaRelay.instances=2",
                                          "networkPolicy.nodeCIDRs={192.168.50.0/24}")
        edge, prov, control, redis, sync, tma = (pods[c] for c in (
            "sip-edge", "provisioning", "control", "redis", "sync", "tma"))
        self.assertTrue(pods["media-relay"].host_network)
        phone, ipbx = netpol.Outside("203.0.113.9"), netpol.Outside("10.1.2.3")
        node, elsewhere = netpol.Outside("192.168.50.7"), netpol.Outside("198.51.100.1")
        foreign = netpol.Pod("ns", {"app": "other"}, {"kubernetes.io/metadata.name": "ns"})
        monitoring = netpol.Pod("monitoring", {"app": "prometheus"},
                                {"kubernetes.io/metadata.name": "monitoring"})
        dns = netpol.Pod("kube-system", {"k8s-app": "kube-dns"},
                         {"kubernetes.io/metadata.name": "kube-system"})
        test = netpol.Pod("ns", {"app.kubernetes.io/name": "rwg", "app.kubernetes.io/instance": "r",
                                 "app.kubernetes.io/component": "test"},
                          {"kubernetes.io/metadata.name": "ns"})
        cases = [
            # From the internet: SIP over TLS and HTTPS only.
            (phone, edge, 5061, "TCP", True), (phone, edge, 5060, "TCP", False),
            (phone, edge, 5070, "TCP", False), (phone, edge, 50052, "TCP", False),
            (phone, edge, 9462, "TCP", False), (phone, prov, 4445, "TCP", True),
            (phone, prov, 50054, "TCP", False), (phone, control, 50051, "TCP", False),
            (phone, redis, 6379, "TCP", False),
            # The iPBX: its listener on the edge, nothing else inside.
            (ipbx, edge, 5070, "TCP", True), (ipbx, control, 50051, "TCP", False),
            (ipbx, redis, 6379, "TCP", False), (ipbx, prov, 50054, "TCP", False),
            # Pods of the namespace that are not rwg's.
            (foreign, control, 50051, "TCP", False), (foreign, redis, 6379, "TCP", False),
            (foreign, edge, 5070, "TCP", False), (foreign, prov, 50054, "TCP", False),
            # rwg's own traffic.
            (pods["configure"], control, 50051, "TCP", True),
            (edge, redis, 6379, "TCP", True), (prov, redis, 6379, "TCP", True),
            (control, redis, 6379, "TCP", True), (node, redis, 6379, "TCP", True),
            (edge, edge, 5070, "TCP", True), (edge, dns, 53, "UDP", True),
            (edge, node, 50100, "TCP", True), (edge, node, 50101, "TCP", True),
            (edge, node, 50102, "TCP", False),
            # Out: SIP to the iPBX, XML to the iPBX; nothing to anywhere else.
            (edge, ipbx, 5060, "TCP", True), (edge, ipbx, 5060, "UDP", True),
            (edge, ipbx, 4443, "TCP", False), (edge, elsewhere, 5060, "TCP", False),
            (edge, elsewhere, 443, "TCP", False), (prov, ipbx, 4443, "TCP", True),
            (prov, ipbx, 5060, "TCP", False), (prov, elsewhere, 443, "TCP", False),
            (control, elsewhere, 443, "TCP", False), (control, ipbx, 5060, "TCP", False),
            (redis, elsewhere, 443, "TCP", False), (redis, control, 50051, "TCP", False),
            # Metrics: scraped from any namespace by default.
            (monitoring, edge, 9462, "TCP", True), (monitoring, control, 9461, "TCP", True),
            (monitoring, prov, 9464, "TCP", True), (monitoring, redis, 6379, "TCP", False),
            (monitoring, control, 50051, "TCP", False),
            # sync: its HTTPS API from the iPBX only (and the release's test pods); gRPC from
            # the release's pods; metrics from the scraping namespaces; Redis and DNS out.
            (ipbx, sync, 8443, "TCP", True), (phone, sync, 8443, "TCP", False),
            (elsewhere, sync, 8443, "TCP", False), (node, sync, 8443, "TCP", False),
            (foreign, sync, 8443, "TCP", False), (test, sync, 8443, "TCP", True),
            (ipbx, sync, 50055, "TCP", False), (ipbx, sync, 9465, "TCP", False),
            (phone, sync, 50055, "TCP", False), (foreign, sync, 50055, "TCP", False),
            (test, sync, 50055, "TCP", True), (monitoring, sync, 9465, "TCP", True),
            (monitoring, sync, 8443, "TCP", False), (monitoring, sync, 50055, "TCP", False),
            (sync, redis, 6379, "TCP", True), (sync, dns, 53, "UDP", True),
            (sync, dns, 53, "TCP", True), (sync, control, 50051, "TCP", False),
            (sync, ipbx, 443, "TCP", False), (sync, ipbx, 8443, "TCP", False),
            (sync, elsewhere, 443, "TCP", False), (sync, node, 50100, "TCP", False),
            (sync, edge, 5070, "TCP", False),
            # tma: its API from the release's pods as control's (rwgctl through a port-forward
            # arrives inside the pod); metrics from the scraping namespaces. Out: Redis, DNS,
            # provisioning's store API and FTP/FTPS servers anywhere (any TCP port: passive
            # data ports), nothing else of the cluster's.
            (pods["configure"], tma, 50056, "TCP", True), (test, tma, 50056, "TCP", True),
            (phone, tma, 50056, "TCP", False), (ipbx, tma, 50056, "TCP", False),
            (node, tma, 50056, "TCP", False), (foreign, tma, 50056, "TCP", False),
            (monitoring, tma, 50056, "TCP", False), (monitoring, tma, 9466, "TCP", True),
            (phone, tma, 9466, "TCP", False), (foreign, tma, 21, "TCP", False),
            (tma, redis, 6379, "TCP", True), (tma, dns, 53, "UDP", True),
            (tma, dns, 53, "TCP", True), (tma, prov, 50054, "TCP", True),
            (tma, prov, 4445, "TCP", False), (tma, control, 50051, "TCP", False),
            (tma, sync, 50055, "TCP", False), (tma, edge, 5070, "TCP", False),
            (tma, elsewhere, 21, "TCP", True), (tma, elsewhere, 50123, "TCP", True),
            (tma, elsewhere, 990, "TCP", True), (tma, ipbx, 21, "TCP", True),
            (tma, elsewhere, 21, "UDP", False), (tma, elsewhere, 69, "UDP", False),
            (tma, foreign, 21, "TCP", False),
            # The other services' egress does not name tma.
            (prov, tma, 50056, "TCP", False), (sync, tma, 50056, "TCP", False),
        ]
        wrong = [f"{netpol.name(s)} -> {netpol.name(d)}:{port}/{proto} should be "
                 f"{'allowed' if want else 'denied'}" for s, d, port, proto, want in cases
                 if np.allows(s, d, port, proto) != want]
        self.assertEqual(wrong, [])
        # SIP over TCP for phones when enabled; scraping only from the namespaces chosen.
        pods, np = self.pods_and_policies(
            "icp.host=10.1.2.3", "sipEdge.tcp=true",
            "networkPolicy.metricsNamespaceSelector.matchLabels.name=monitoring")
        watcher = netpol.Pod("monitoring", {"app": "prometheus"}, {"name": "monitoring"})
        self.assertTrue(np.allows(phone, pods["sip-edge"], 5060))
        self.assertTrue(np.allows(watcher, pods["sip-edge"], 9462))
        self.assertFalse(np.allows(monitoring, pods["sip-edge"], 9462))
        self.assertFalse(np.allows(foreign, pods["sip-edge"], 9462))
        self.assertTrue(np.allows(watcher, pods["sync"], 9465))
        self.assertFalse(np.allows(monitoring, pods["sync"], 9465))
        self.assertFalse(np.allows(foreign, pods["sync"], 9465))
        # sync.allowedSources replaces the iPBX's address; without an iPBX address, every
        # address outside the cluster (as the iPBX's other rules).
        pods, np = self.pods_and_policies("icp.host=10.1.2.3", "sync.allowedSources={192.0.2.0/24}")
        self.assertTrue(np.allows(netpol.Outside("192.0.2.77"), pods["sync"], 8443))
        self.assertFalse(np.allows(ipbx, pods["sync"], 8443))
        self.assertFalse(np.allows(netpol.Outside("192.0.2.77"), pods["sync"], 50055))
        pods, np = self.pods_and_policies("icp.cidrs={10.1.0.0/16}")
        self.assertTrue(np.allows(netpol.Outside("10.1.9.9"), pods["sync"], 8443))
        self.assertFalse(np.allows(phone, pods["sync"], 8443))
        pods, np = self.pods_and_policies("sync.enabled=false")
        self.assertNotIn("sync", pods)
        # tma.ftpEgress narrows where the FTP servers may be; empty: servers of kind local only.
        pods, np = self.pods_and_policies("tma.ftpEgress={192.0.2.0/24,198.51.100.7/32}")
        tma, prov = pods["tma"], pods["provisioning"]
        self.assertTrue(np.allows(tma, netpol.Outside("192.0.2.21"), 21))
        self.assertTrue(np.allows(tma, netpol.Outside("192.0.2.21"), 40000))
        self.assertTrue(np.allows(tma, netpol.Outside("198.51.100.7"), 21))
        self.assertFalse(np.allows(tma, netpol.Outside("198.51.100.8"), 21))
        self.assertFalse(np.allows(tma, elsewhere, 21))
        self.assertTrue(np.allows(tma, prov, 50054))
        pods, np = self.pods_and_policies("tma.ftpEgress=null")
        self.assertFalse(np.allows(pods["tma"], elsewhere, 21))
        self.assertTrue(np.allows(pods["tma"], pods["provisioning"], 50054))
        self.assertTrue(np.allows(pods["tma"], pods["redis"], 6379))
        pods, np = self.pods_and_policies("tma.enabled=false")
        self.assertNotIn("tma", pods)
        self.assertNotIn("ott", pods)  # off by default
        # ott: HTTPS from anywhere; its admin API from the release's pods as control's;
        # metrics from the scraping namespaces. Out: Redis, DNS and ott.backendEgress (by
        # default anywhere on 80 and 443), nothing else of the cluster's.
        pods, np = self.pods_and_policies("ott.enabled=true")
        ott, control, redis = pods["ott"], pods["control"], pods["redis"]
        cases = [
            (phone, ott, 8443, "TCP", True), (elsewhere, ott, 8443, "TCP", True),
            (node, ott, 8443, "TCP", True), (foreign, ott, 8443, "TCP", True),
            (phone, ott, 50057, "TCP", False), (phone, ott, 9467, "TCP", False),
            (foreign, ott, 50057, "TCP", False), (node, ott, 50057, "TCP", False),
            (pods["configure"], ott, 50057, "TCP", True), (test, ott, 50057, "TCP", True),
            (monitoring, ott, 9467, "TCP", True), (monitoring, ott, 50057, "TCP", False),
            (ott, redis, 6379, "TCP", True), (ott, dns, 53, "UDP", True),
            (ott, elsewhere, 443, "TCP", True), (ott, elsewhere, 80, "TCP", True),
            (ott, ipbx, 443, "TCP", True), (ott, elsewhere, 8080, "TCP", False),
            (ott, elsewhere, 443, "UDP", False), (ott, control, 50051, "TCP", False),
            (ott, pods["provisioning"], 50054, "TCP", False),
            (control, ott, 8443, "TCP", False),  # control's egress does not name ott
        ]
        wrong = [f"{netpol.name(s)} -> {netpol.name(d)}:{port}/{proto} should be "
                 f"{'allowed' if want else 'denied'}" for s, d, port, proto, want in cases
                 if np.allows(s, d, port, proto) != want]
        self.assertEqual(wrong, [])
        pods, np = self.pods_and_policies("ott.enabled=true",
                                          "ott.backendEgress.cidrs={10.1.0.0/16}",
                                          "ott.backendEgress.ports={443,4443}")
        self.assertTrue(np.allows(pods["ott"], netpol.Outside("10.1.2.3"), 4443))
        self.assertTrue(np.allows(pods["ott"], netpol.Outside("10.1.2.3"), 443))
        self.assertFalse(np.allows(pods["ott"], netpol.Outside("10.1.2.3"), 80))
        self.assertFalse(np.allows(pods["ott"], elsewhere, 443))
        pods, np = self.pods_and_policies("ott.enabled=true", "ott.backendEgress.ports=null")
        self.assertTrue(np.allows(pods["ott"], elsewhere, 8080))
        pods, np = self.pods_and_policies("ott.enabled=true", "ott.backendEgress.cidrs=null")
        self.assertFalse(np.allows(pods["ott"], elsewhere, 443))
        self.assertTrue(np.allows(pods["ott"], pods["redis"], 6379))
        # provisioning on the host network: its store API at the nodes' addresses.
        pods, np = self.pods_and_policies("expose.hostNetwork=true", "expose.type=NodePort",
                                          "ports.sipTls=30561", "ports.https=30445",
                                          "networkPolicy.nodeCIDRs={192.168.50.0/24}",
                                          "tma.ftpEgress={192.0.2.0/24}")
        self.assertTrue(pods["provisioning"].host_network)
        self.assertTrue(np.allows(pods["tma"], node, 50054))
        self.assertFalse(np.allows(pods["tma"], node, 4445))
        self.assertFalse(np.allows(pods["tma"], elsewhere, 50054))
        # Without policies everything is open: the evaluator is not what denies.
        pods, np = self.pods_and_policies("icp.host=10.1.2.3", "networkPolicy.enabled=false")
        self.assertTrue(np.allows(phone, pods["redis"], 6379))
        self.assertTrue(np.allows(pods["sip-edge"], elsewhere, 443))

    def test_host_network_exposure(self):
        d = self.template("expose.hostNetwork=true", "expose.type=NodePort", "sipEdge.replicas=1")
        for name in ("r-rwg-sip-edge", "r-rwg-provisioning"):
            t = next(t for k, n, t in d if k == "Deployment" and n == name)
            self.assertIn("hostNetwork: true", t)
            self.assertIn("dnsPolicy: ClusterFirstWithHostNet", t)
            self.assertIn("podAntiAffinity", t)
        for name in ("r-rwg-sip", "r-rwg-https"):
            t = next(t for k, n, t in d if k == "Service" and n == name)
            self.assertIn("type: ClusterIP", t)
            self.assertNotIn("nodePort", t)
        self.assertIn("sipEdge.grpcPort", self.refused("expose.hostNetwork=true",
                                                       "sipEdge.grpcPort=50100"))

    def test_dashboards_and_rules_picked_up(self):
        chart = os.path.join(self.tmp, "rwg")
        shutil.copytree(CHART, chart)
        os.makedirs(os.path.join(chart, "dashboards"), exist_ok=True)
        os.makedirs(os.path.join(chart, "rules"), exist_ok=True)
        with open(os.path.join(chart, "dashboards", "test_board.json"), "w") as f:
            f.write('{"uid": "rwg-test", "title": "t", "panels": []}\n')
        with open(os.path.join(chart, "rules", "rwg.rules.yaml"), "w") as f:
            f.write("groups:\n  - name: rwg\n    rules:\n      - alert: RwgTest\n"
                    "        expr: vector(1)\n")
        out = self.helm("template", "r", chart, "--set", "metrics.prometheusRule.enabled=true",
                        "--set", "metrics.prometheusRule.force=true").stdout
        d = docs(out)
        cm = next(t for k, n, t in d if k == "ConfigMap" and n == "r-rwg-dashboard-test-board")
        self.assertIn('grafana_dashboard: "1"', cm)
        self.assertIn('"uid": "rwg-test"', cm)
        rule = next(t for k, n, t in d if k == "PrometheusRule")
        self.assertIn("alert: RwgTest", rule)
        # Without force, only where the API exists (not on a bare cluster).
        out = self.helm("template", "r", chart, "--set",
                        "metrics.prometheusRule.enabled=true").stdout
        self.assertNotIn("kind: PrometheusRule", out)
        out = self.helm("template", "r", chart, "--set", "metrics.dashboards.enabled=false").stdout
        self.assertNotIn("grafana_dashboard", out)

    def test_bad_values_refused(self):
        cases = [
            (["expose.type=Ingress"], "/expose/type"),
            (["sipEdge.replica=3"], "additional properties 'replica' not allowed"),
            (["mediaRelay.instances=0"], "/mediaRelay/instances"),
            (["ports.sipTls=443"], "/ports/sipTls"),
            (["expose.type=NodePort"], "/ports/sipTls"),
            (["publicAddress=not-an-ip"], "/publicAddress"),
            (["icp.sipTransports=sctp"], "/icp/sipTransports"),
            (["icp.cidrs={10.0.0.0/33}"], "/icp/cidrs/0"),
            (["redis.enabled=false"], "/redis/external/address"),
            (["mediaRelay.srtpEngine=gnutls"], "/mediaRelay/srtpEngine"),
            (["mediaRelay.instances=64", "mediaRelay.portMax=20100"],
             "fewer than 2 for each of the 64 instances"),
            (["mediaRelay.portMax=19000"], "portMax (19000) must be above portMin (20000)"),
            (["provisioning.replicas=2"], "provisioning.replicas above 1 need a shared store"),
            (["sync.service.type=Ingress"], "/sync/service/type"),
            (["sync.port=443"], "/sync/port"),
            (["sync.grpcPort=70000"], "/sync/grpcPort"),
            (["sync.replicas=-1"], "/sync/replicas"),
            (["sync.replica=2"], "additional properties 'replica' not allowed"),
            (["sync.allowedSources={10.0.0.0/33}"], "/sync/allowedSources/0"),
            (["sync.allowedSources={ipbx.example.com}"], "/sync/allowedSources/0"),
            (["sync.service.nodePort=8443"], "/sync/service/nodePort"),
            (["sync.service.externalTrafficPolicy=Any"], "/sync/service/externalTrafficPolicy"),
            (["sync.tls.ipAddresses={not-an-ip}"], "/sync/tls/ipAddresses/0"),
            (["sync.tls.days=0"], "/sync/tls/days"),
            (["sync.logLevel=trace"], "/sync/logLevel"),
            (["sync.enabled=yes"], "/sync/enabled"),
            (["expose.type=NodePort", "ports.sipTls=30561", "ports.https=30445",
              "sync.service.nodePort=30445"], "sync.service.nodePort 30445 is also a node port"),
            (["tma.enabled=yes"], "/tma/enabled"),
            (["tma.replicas=-1"], "/tma/replicas"),
            (["tma.replica=2"], "additional properties 'replica' not allowed"),
            (["tma.grpcPort=80"], "/tma/grpcPort"),
            (["tma.metricsPort=70000"], "/tma/metricsPort"),
            (["tma.parallelTransfers=0"], "/tma/parallelTransfers"),
            (["tma.parallelTransfers=33"], "/tma/parallelTransfers"),
            (["tma.leaseSeconds=2"], "/tma/leaseSeconds"),
            (["tma.leaseSeconds=3601"], "/tma/leaseSeconds"),
            (["tma.ftpEgress={ftp.example.com}"], "/tma/ftpEgress/0"),
            (["tma.ftpEgress={10.0.0.1}"], "/tma/ftpEgress/0"),
            (["tma.ftpEgress={10.0.0.0/33}"], "/tma/ftpEgress/0"),
            (["tma.logLevel=trace"], "/tma/logLevel"),
            (["tma.storeAddress=x:1"], "additional properties 'storeAddress' not allowed"),
            (["tma.caFiles.a/b=-----BEGIN CERTIFICATE-----"], "invalid propertyName 'a/b'"),
            (["tma.caFiles.ca\\.pem=not a certificate"], "/tma/caFiles/ca.pem"),
            (["ott.enabled=yes"], "/ott/enabled"),
            (["ott.replicas=-1"], "/ott/replicas"),
            (["ott.replica=2"], "additional properties 'replica' not allowed"),
            (["ott.httpsPort=443"], "/ott/httpsPort"),
            (["ott.grpcPort=80"], "/ott/grpcPort"),
            (["ott.port=0"], "/ott/port"),
            (["ott.threads=0"], "/ott/threads"),
            (["ott.service.type=Ingress"], "/ott/service/type"),
            (["ott.service.nodePort=443"], "/ott/service/nodePort"),
            (["ott.certificates[0].fqdn=Portal.Example.com",
              "ott.certificates[0].secretName=a"], "/ott/certificates/0/fqdn"),
            (["ott.certificates[0].fqdn=portal.example.com"], "secretName"),
            (["ott.certificates[0].fqdn=portal.example.com",
              "ott.certificates[0].secretName=Bad_Name"], "/ott/certificates/0/secretName"),
            (["ott.backendEgress.cidrs={manager.lan}"], "/ott/backendEgress/cidrs/0"),
            (["ott.backendEgress.ports={0}"], "/ott/backendEgress/ports/0"),
            (["ott.backendEgress.hosts={a}"], "additional properties 'hosts' not allowed"),
            (["ott.caFiles.ca\\.pem=not a certificate"], "/ott/caFiles/ca.pem"),
            (["ott.logLevel=trace"], "/ott/logLevel"),
            (["expose.type=NodePort", "ports.sipTls=30561", "ports.https=30445",
              "sipEdge.tcp=true"], "must be within 30000-32767"),
        ]
        for sets, message in cases:
            with self.subTest(sets=sets):
                self.assertIn(message, self.refused(*sets))



class SentinelInitStepsTest(ChartCase):
    """The init steps of Redis with Sentinel (templates/redis.yaml), as the chart renders them,
    run by busybox sh against real redis-server processes and sentinels: each pod is a loopback
    address here (its DNS name in the scripts replaced by the address, its /conf, /data and
    /etc/redis by directories), and a pod started again gets new empty ones, as an emptyDir.
    The paths a cluster reaches only by bad luck are run on purpose: a master started again
    while the sentinels still name it, and the master going with every sentinel at once."""

    PODS = 3
    SENTINELS = 3
    AUTH = True  # redis.auth

    @staticmethod
    def ip(i):
        return f"127.0.1.{10 + i}"

    @staticmethod
    def sentinel_ip(i):
        return f"127.0.1.{20 + i}"

    def setUp(self):
        super().setUp()
        for tool in ("redis-server", "redis-cli", "busybox"):
            self.assertTrue(shutil.which(tool), f"{tool} not installed (./tools/rwg deps)")
        self.busybox = shutil.which("busybox")
        out = self.template("redis.sentinel.enabled=true",
                            f"redis.sentinel.replicas={self.PODS - 1}",
                            f"redis.sentinel.sentinels={self.SENTINELS}",
                            "redis.sentinel.downAfterMilliseconds=1000",
                            "redis.sentinel.failoverTimeoutMilliseconds=5000",
                            "redis.sentinel.emptyMasterWaitSeconds=10",
                            f"redis.auth={str(self.AUTH).lower()}")
        sets = {n: yaml.safe_load(t)["spec"]["template"]["spec"]
                for k, n, t in out if k == "StatefulSet" and n.startswith("r-rwg-redis")}
        self.role_script = sets["r-rwg-redis"]["initContainers"][0]["args"][0]
        self.redis_args = sets["r-rwg-redis"]["containers"][0]["args"]
        self.config_script = sets["r-rwg-redis-sentinel"]["initContainers"][0]["args"][0]
        secrets = [yaml.safe_load(t) for k, n, t in out if k == "Secret" and n == "r-rwg-redis"]
        self.assertEqual(len(secrets), int(self.AUTH))
        self.password = (base64.b64decode(secrets[0]["data"]["password"]).decode()
                         if self.AUTH else "")
        self.redis = {}
        self.sentinels = {}
        self.addCleanup(self.stop_all)

    def stop_all(self):
        for p in list(self.redis.values()) + list(self.sentinels.values()):
            p.kill()
            p.wait(10)

    def local(self, script, pod):
        """The script with the cluster's names and paths replaced by this pod's."""
        s = script
        for name in ("r-rwg-redis-headless", "r-rwg-redis-sentinel"):
            s = s.replace(f"$POD_NAME.{name}.ns.svc.cluster.local", "$ADDRESS")
        for i in range(self.PODS):
            s = s.replace(f"r-rwg-redis-{i}.r-rwg-redis-headless.ns.svc.cluster.local", self.ip(i))
        for i in range(self.SENTINELS):
            s = s.replace(f"r-rwg-redis-sentinel-{i}.r-rwg-redis-sentinel.ns.svc.cluster.local",
                          self.sentinel_ip(i))
        self.assertNotIn("cluster.local", s)
        s = s.replace('nslookup "${master% *}"', "true")  # addresses need no resolving here
        s = s.replace("/usr/bin/busybox", self.busybox).replace("/tmp/bin", f"{pod}/bin")
        for d in ("conf", "data", "etc/redis-auth", "etc/redis"):
            s = s.replace(f"/{d}/", f"{pod}/{d}/")
        return s

    def new_pod(self, name):
        """A pod's directories, empty (its emptyDirs, and the Secret's files)."""
        pod = os.path.join(self.tmp, name)
        shutil.rmtree(pod, ignore_errors=True)
        for d in ("bin", "conf", "data", "etc/redis-auth", "etc/redis"):
            os.makedirs(os.path.join(pod, d))
        if self.AUTH:  # the Secret's files, mounted
            with open(os.path.join(pod, "etc/redis-auth/password"), "w") as f:
                f.write(self.password)
            with open(os.path.join(pod, "etc/redis/redis.conf"), "w") as f:
                f.write(f"requirepass {self.password}\nmasterauth {self.password}\n")
        return pod

    def init_step(self, script, name, address):
        pod = self.new_pod(name)
        p = subprocess.run([self.busybox, "sh", "-c", self.local(script, pod)], text=True,
                           env={"POD_NAME": name, "ADDRESS": address, "PATH": "/usr/bin:/bin"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        return pod, p.returncode, p.stdout

    def start_redis(self, i, init=None):
        """Pod i of the Redis StatefulSet: its init step (unless `init`, its result, is given),
        then redis-server as the container runs it. Returns the init step's output."""
        pod, rc, out = init or self.init_step(self.role_script, f"r-rwg-redis-{i}", self.ip(i))
        self.assertEqual(rc, 0, out)
        args = [a.replace("/conf/", f"{pod}/conf/") for a in self.redis_args]
        args = [{"0.0.0.0": self.ip(i), "/data": f"{pod}/data"}.get(a, a) for a in args]
        self.redis[i] = subprocess.Popen(["redis-server", *args, "--logfile", f"{pod}/log"])
        rwgtest.wait_until(f"Redis pod {i} up", lambda: self.cli(self.ip(i), 6379, "PING",
                                                                  check=False) == "PONG")
        return out

    def start_sentinel(self, i, init=None):
        pod, rc, out = init or self.init_step(self.config_script, f"r-rwg-redis-sentinel-{i}",
                                              self.sentinel_ip(i))
        self.assertEqual(rc, 0, out)
        self.sentinels[i] = subprocess.Popen(["redis-server", f"{pod}/conf/sentinel.conf",
                                              "--sentinel", "--bind", self.sentinel_ip(i),
                                              "--logfile", f"{pod}/log"])
        rwgtest.wait_until(f"sentinel {i} up", lambda: self.cli(
            self.sentinel_ip(i), 26379, "PING", check=False) == "PONG")
        return out

    @staticmethod
    def kill(table, i):
        p = table.pop(i)
        p.kill()
        p.wait(10)

    def cli(self, host, port, *args, check=True):
        auth = ["--no-auth-warning", "-a", self.password] if self.AUTH else []
        p = subprocess.run(["redis-cli", "-h", host, "-p", str(port), *auth, *args], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        if check:
            self.assertEqual(p.returncode, 0, p.stdout)
        return p.stdout.strip()

    def named_master(self):
        """The master's address if every running sentinel names the same one, else None."""
        named = {self.cli(self.sentinel_ip(i), 26379, "SENTINEL", "get-master-addr-by-name",
                          "rwg", check=False).split("\n")[0] for i in self.sentinels}
        return named.pop() if len(named) == 1 else None

    def sentinels_down_after(self, ms):
        for i in self.sentinels:
            self.cli(self.sentinel_ip(i), 26379, "SENTINEL", "SET", "rwg",
                     "down-after-milliseconds", str(ms))

    def logs(self):
        """The last lines of every sentinel's log."""
        out = []
        for i in range(self.SENTINELS):
            path = os.path.join(self.tmp, f"r-rwg-redis-sentinel-{i}", "log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out += [f"sentinel {i}: {line.rstrip()}" for line in f.readlines()[-8:]]
        return "\n".join(out)

    def role(self, i):
        return self.cli(self.ip(i), 6379, "ROLE").split("\n")

    def keys_everywhere(self, want):
        return all(self.cli(self.ip(i), 6379, "DBSIZE") == str(want) for i in self.redis)

    def test_no_failure_starts_an_empty_master(self):
        # First start, everything at once: pod 0 is the master, the others its replicas.
        for i in range(self.SENTINELS):
            self.assertIn(f"monitoring {self.ip(0)} 6379", self.start_sentinel(i))
        self.assertNotIn("replicaof", self.start_redis(0))
        for i in (1, 2):
            self.assertIn(f"replicaof {self.ip(0)} 6379", self.start_redis(i))
        for i in range(50):
            self.cli(self.ip(0), 6379, "SET", f"binding:{i}", "x")
        rwgtest.wait_until("replicated", lambda: self.keys_everywhere(50), timeout=10)
        try:
            rwgtest.wait_until("both replicas seen by the sentinels", lambda: all(
                self.cli(self.sentinel_ip(i), 26379, "SENTINEL", "replicas", "rwg").count(
                    "\nflags\nslave\n") == 2 for i in self.sentinels), timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}: " + self.cli(self.sentinel_ip(0), 26379, "SENTINEL",
                                                     "replicas", "rwg")) from None

        # The master's pod is started again (its data was in its emptyDir) while the sentinels
        # still name it: its init step waits for a failover, and when none comes it fails
        # rather than start an empty master that the replicas would copy.
        self.sentinels_down_after(600000)
        self.kill(self.redis, 0)
        _, rc, out = self.init_step(self.role_script, "r-rwg-redis-0", self.ip(0))
        self.assertNotEqual(rc, 0, out)
        self.assertIn("waiting for a failover", out)
        self.assertIn("not starting as an empty master", out)
        self.assertTrue(self.keys_everywhere(50))
        # Once the sentinels fail over, the same step makes it a replica of the new master.
        # (Not straight back to 1 s: Sentinel promotes no replica whose link to the master has
        # been down for longer than ten times that plus the time the master was seen down.)
        self.sentinels_down_after(10000)
        try:
            rwgtest.wait_until("a replica promoted", lambda: self.named_master() not in (
                None, self.ip(0)), timeout=60)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None
        first = self.named_master()
        self.sentinels_down_after(1000)
        self.assertIn(f"replicaof {first} 6379", self.start_redis(0))
        rwgtest.wait_until("pod 0 holds the data again", lambda: self.keys_everywhere(50),
                           timeout=20)

        # The master and every sentinel go at once (a node lost, a careless delete). Nobody
        # names a master: the replica holding the most is promoted, not an empty pod 0.
        m = next(i for i in self.redis if self.ip(i) == first)
        other = next(i for i in self.redis if i != m and i != 0)
        self.cli(first, 6379, "SET", "binding:last", "x")
        # Both replicas hold the last key before the master goes (WAIT's 2 s were not always
        # enough on a loaded machine: pod 0 then still had 50 keys).
        rwgtest.wait_until("the last key on both replicas", lambda: all(
            self.cli(self.ip(i), 6379, "DBSIZE") == "51" for i in (0, other)), timeout=20)
        for i in list(self.sentinels):
            self.kill(self.sentinels, i)
        self.kill(self.redis, m)
        self.assertEqual(self.cli(self.ip(0), 6379, "DBSIZE"), "51")
        self.assertEqual(self.cli(self.ip(other), 6379, "DBSIZE"), "51")
        # The pod's and the three sentinels' init steps all run at once, as they do when the
        # pods come back together: they must choose the same replica, and promote only it.
        with concurrent.futures.ThreadPoolExecutor(1 + self.SENTINELS) as pool:
            role = pool.submit(self.init_step, self.role_script, f"r-rwg-redis-{m}", self.ip(m))
            configs = [pool.submit(self.init_step, self.config_script,
                                   f"r-rwg-redis-sentinel-{i}", self.sentinel_ip(i))
                       for i in range(self.SENTINELS)]
            role, configs = role.result(), [c.result() for c in configs]
        out = self.start_redis(m, init=role)
        promoted = next(i for i in (0, other) if self.role(i)[0] == "master")
        self.assertEqual([i for i in (0, other) if self.role(i)[0] == "master"], [promoted])
        self.assertIn(f"promoting the replica holding the most, {self.ip(promoted)}",
                      out + "".join(c[2] for c in configs))
        self.assertIn(f"replicaof {self.ip(promoted)} 6379", out)
        for i in range(self.SENTINELS):
            self.assertIn(f"monitoring {self.ip(promoted)} 6379",
                          self.start_sentinel(i, init=configs[i]))
        rwgtest.wait_until("every Redis pod following the promoted one", lambda: all(
            self.role(i)[0] == "slave" and self.role(i)[1] == self.ip(promoted)
            for i in self.redis if i != promoted), timeout=20)
        self.cli(self.ip(promoted), 6379, "SET", "binding:after", "x")
        rwgtest.wait_until("nothing lost, written everywhere", lambda: self.keys_everywhere(52),
                           timeout=20)
        self.assertEqual(self.named_master(), self.ip(promoted))
        if self.AUTH:  # Redis and the sentinels refuse a client without the password
            for host, port in ((self.ip(promoted), 6379), (self.sentinel_ip(0), 26379)):
                p = subprocess.run(["redis-cli", "-h", host, "-p", str(port), "PING"], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
                self.assertIn("NOAUTH", p.stdout)


class SentinelInitStepsWithoutAuthTest(SentinelInitStepsTest):
    """The same with redis.auth false: no password anywhere, the steps' commands unauthenticated."""
    AUTH = False


if __name__ == "__main__":
    unittest.main()
