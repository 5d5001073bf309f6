"""Integration: TLS certificates read again without a restart (core::CertificateWatcher).

Real redis-server, control, Kamailio as the iPBX, sip-edge and provisioning; all their TLS
endpoints (sip-edge's SIP/TLS listener, provisioning's HTTPS port, the gRPC ports of control,
sip-edge and provisioning) read one certificate/key pair from a directory laid out like a
Kubernetes Secret volume (tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>), which the tests
swap the way the kubelet does. Every leaf is signed by one CA, so a client verifying that CA
accepts any of them: a failed handshake during a swap is a gap in the service.
"""
import concurrent.futures
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

import rwgtest
import sipclient

ADMIN_PASSWORD = "cert-reload-admin-pw"
DOMAIN = "rwg.test"
DEVICES = {"1001": ("phone-pw-1001", "21001", "icp-pw-21001"),
           "1002": ("phone-pw-1002", "21002", "icp-pw-21002")}
IPBX_CREDENTIALS = {"21001": "icp-pw-21001", "21002": "icp-pw-21002"}
PROV_FILE = ("aastra.cfg", b"sip proxy ip: rwg.example.net\nsip proxy port: 5061\n")
RELOADS = 150  # pairs loaded in a row by test_reloads_keep_no_memory
LEAVES = 110  # distinct server pairs: 100 for the swaps, the rest for the other cases
SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,DNS:127.0.0.2\n"
HEALTH_SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


def sha256_der_of_pem(pem):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


class Pool:
    """One CA and LEAVES server pairs signed by it, plus broken ones; made once per run."""

    def __init__(self, directory):
        self.dir = directory
        self.run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=reload CA",
                 "-keyout", "ca.key", "-out", "ca.pem")
        with open(os.path.join(directory, "ext"), "w") as f:
            f.write(SAN)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(self.make_leaf, range(LEAVES)))
        self.ca = os.path.join(directory, "ca.pem")
        self.leaves = []  # (cert_pem, key_pem, sha256 of the DER)
        for i in range(LEAVES):
            cert = rwgtest.read_bytes(os.path.join(directory, f"l{i}.crt"))
            key = rwgtest.read_bytes(os.path.join(directory, f"l{i}.key"))
            self.leaves.append((cert, key, sha256_der_of_pem(cert)))
        # Signed by the same CA with dates in the past / in the future (openssl ca takes
        # -startdate/-enddate; openssl x509 -days cannot go back).
        with open(os.path.join(directory, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
                    "serial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                    "[p]\ncommonName = supplied\n")
        open(os.path.join(directory, "index.txt"), "w").close()
        with open(os.path.join(directory, "serial"), "w") as f:
            f.write("5000\n")
        for name, start, end in (("expired", "20200101000000Z", "20200102000000Z"),
                                 ("future", "20990101000000Z", "20991231000000Z")):
            self.run("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem",
                     "-keyfile", "ca.key", "-in", "l0.csr", "-out", f"{name}.crt",
                     "-startdate", start, "-enddate", end, "-extfile", "ext", "-notext")
        self.expired = rwgtest.read_bytes(os.path.join(directory, "expired.crt"))
        self.future = rwgtest.read_bytes(os.path.join(directory, "future.crt"))
        # The files are older than a second once the tests swap them in.

    def run(self, *args):
        subprocess.run(args, check=True, cwd=self.dir, capture_output=True)

    def make_leaf(self, i):
        self.run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", f"/CN=localhost {i}", "-keyout", f"l{i}.key",
                 "-out", f"l{i}.csr")
        self.run("openssl", "x509", "-req", "-in", f"l{i}.csr", "-CA", "ca.pem", "-CAkey",
                 "ca.key", "-set_serial", str(1000 + i), "-days", "2", "-extfile", "ext",
                 "-out", f"l{i}.crt")

    def leaf_files(self, i):
        return os.path.join(self.dir, f"l{i}.crt"), os.path.join(self.dir, f"l{i}.key")


class SecretVolume:
    """A directory as the kubelet lays out a Secret: tls.crt -> ..data/tls.crt,
    tls.key -> ..data/tls.key, ..data -> ..<timestamp>; swap() replaces it atomically."""

    def __init__(self, directory):
        self.dir = directory
        os.mkdir(directory)
        self.current = None
        self.cert = os.path.join(directory, "tls.crt")
        self.key = os.path.join(directory, "tls.key")
        self.n = 0

    def swap(self, cert, key, keep_mtime_of=None):
        """`cert`, `key`: bytes. With keep_mtime_of=(cert_path, key_path) the new files carry
        those files' modification times (as cp -p would), otherwise the current time."""
        self.n += 1
        name = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self.n:06d}"
        path = os.path.join(self.dir, name)
        os.mkdir(path)
        for data, fname, src in ((cert, "tls.crt", keep_mtime_of and keep_mtime_of[0]),
                                 (key, "tls.key", keep_mtime_of and keep_mtime_of[1])):
            with open(os.path.join(path, fname), "wb") as f:
                f.write(data)
            if src:
                st = os.stat(src)
                os.utime(os.path.join(path, fname), ns=(st.st_atime_ns, st.st_mtime_ns))
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(name, tmp)
        os.rename(tmp, os.path.join(self.dir, "..data"))
        if self.current is None:
            os.symlink("..data/tls.crt", self.cert)
            os.symlink("..data/tls.key", self.key)
        else:
            shutil.rmtree(os.path.join(self.dir, self.current))
        self.current = name


def presented(port, alpn=None, timeout=5):
    """sha256 of the DER of the certificate a fresh TLS handshake to 127.0.0.1:`port` gets
    (any certificate: no verification here, so that a wrong one is seen, not refused)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def parse_metrics(text):
    """{(name, frozenset(labels)): value}"""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def slope(points):
    """Least-squares slope of [(x, y)]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den


def grpc_dirs():
    return {os.path.join("/dev/shm", n) for n in os.listdir("/dev/shm")
            if n.startswith("rwg-grpc-tls-")} if os.path.isdir("/dev/shm") else set()


class Load:
    """Background clients; each counts its successes and failures (first errors kept)."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = {}
        self.failed = {}
        self.errors = {}
        self.threads = []

    def add(self, name, fn, pause):
        def loop():
            while not self.stop.is_set():
                try:
                    err = fn()
                except Exception as e:  # pylint: disable=broad-except
                    err = f"{type(e).__name__}: {e}"
                with self.lock:
                    if err:
                        self.failed[name] = self.failed.get(name, 0) + 1
                        self.errors.setdefault(name, []).append(
                            f"{time.strftime('%H:%M:%S')} {err}")
                    else:
                        self.ok[name] = self.ok.get(name, 0) + 1
                self.stop.wait(pause)
        t = threading.Thread(target=loop, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


POOL = None
_pool_dir = None


def setUpModule():
    global POOL, _pool_dir
    _pool_dir = tempfile.TemporaryDirectory(prefix="rwg-it-certs-")
    POOL = Pool(_pool_dir.name)


def tearDownModule():
    _pool_dir.cleanup()


class CertReloadTest(rwgtest.TempDirTest):
    @property
    def pool(self):
        return POOL

    # -- fixture -----------------------------------------------------------------------------

    def setUp(self):
        super().setUp()
        self.grpc_dirs_before = grpc_dirs()
        self.secret = SecretVolume(os.path.join(self.tmp, "secret"))
        self.leaf = 100  # the pair in use; 0-99 are the swaps of the first case
        self.secret.swap(*self.pool.leaves[self.leaf][:2])
        self.certs = {"ca": self.pool.ca, "cert": self.secret.cert, "key": self.secret.key}
        rwgtest.start_control(self, ADMIN_PASSWORD)

        kdir = os.path.join(self.tmp, "kamailio")
        os.mkdir(kdir)
        self.kamailio = rwgtest.Kamailio(kdir, "127.0.0.2", IPBX_CREDENTIALS).start()
        self.addCleanup(self.kamailio.stop)
        self.ctl.ok("config", "set", f"public_name={DOMAIN}", "icp.host=127.0.0.2",
                    f"icp.sip_port={self.kamailio.port}", "icp.sip_transports=tcp",
                    "licences.teleworker=5")
        for user, (pw_set, icp, pw_icp) in DEVICES.items():
            self.ctl.ok("device", "add", "--set-username", user, "--set-password", pw_set,
                        "--icp-username", icp, "--icp-password", pw_icp, "--location", "FR/Paris")
        self.hash = self.ctl.json("hash", "generate")["key"]

        self.tls_port = rwgtest.free_port()
        self.edge = rwgtest.Service("sip-edge", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--sip-tls-listen", f"127.0.0.1:{self.tls_port}",
            "--sip-tcp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--sip-tls-cert-file", self.secret.cert, "--sip-tls-key-file", self.secret.key,
            "--tls-cert-file", self.secret.cert, "--tls-key-file", self.secret.key,
            "--min-expires", "2", "--config-refresh-ms", "200", "--upstream-timeout-ms", "3000",
            "--pike-requests", "100000", "--max-connections-per-source", "0"])
        self.edge.env = {"TMPDIR": self.tmp}
        self.edge.start()
        self.addCleanup(self.edge.stop)

        store = os.path.join(self.tmp, "store")
        os.mkdir(store)
        with open(os.path.join(store, PROV_FILE[0]), "wb") as f:
            f.write(PROV_FILE[1])
        token = os.path.join(self.tmp, "store-token")
        with open(token, "w") as f:
            f.write("provisioning-store-token-0123456789\n")
        self.prov_port = rwgtest.free_port()
        self.prov = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{self.prov_port}",
            "--https-cert-file", self.secret.cert, "--https-key-file", self.secret.key,
            "--tls-cert-file", self.secret.cert, "--tls-key-file", self.secret.key,
            "--store-dir", store, "--api-token-file", token, "--threads", "2"]).start()
        self.addCleanup(self.prov.stop)

        # The gRPC copies of this test's services: the directories that appeared holding our
        # leaf (another run on the machine may have its own).
        leaf_pem = self.pool.leaves[self.leaf][0]
        def ours():
            found = set()
            for d in grpc_dirs() - self.grpc_dirs_before:
                try:
                    if rwgtest.read_bytes(os.path.join(d, "current", "tls.crt")) == leaf_pem:
                        found.add(d)
                except OSError:
                    pass
            return found if len(found) == 3 else None
        self.our_grpc_dirs = rwgtest.wait_until("the 3 gRPC certificate copies", ours, timeout=5)
        for d in self.our_grpc_dirs:
            self.assertEqual(os.stat(d).st_mode & 0o777, 0o700, d)
        self.assert_all_present(self.leaf, "at start")

    def services(self):
        return {"control": self.control, "sip-edge": self.edge, "provisioning": self.prov}

    def endpoints(self):
        """(name, service, metrics label, port, alpn) of every TLS endpoint."""
        return [("sip-edge SIP/TLS", self.edge, "sip_tls", self.tls_port, None),
                ("provisioning HTTPS", self.prov, "https", self.prov_port, None),
                ("control gRPC", self.control, "grpc", self.control.ports["grpc"], ["h2"]),
                ("sip-edge gRPC", self.edge, "grpc", self.edge.ports["grpc"], ["h2"]),
                ("provisioning gRPC", self.prov, "grpc", self.prov.ports["grpc"], ["h2"])]

    def served(self):
        return {name: presented(port, alpn) for name, _, _, port, alpn in self.endpoints()}

    def assert_all_present(self, leaf, when, timeout=5.0):
        """Every endpoint presents pool leaf `leaf` to a fresh handshake within `timeout`
        seconds; returns {endpoint: seconds it took}."""
        want = self.pool.leaves[leaf][2]
        start = time.monotonic()
        took = {}
        last = {}
        while True:
            for name, _, _, port, alpn in self.endpoints():
                if name in took:
                    continue
                try:
                    last[name] = presented(port, alpn)
                except (OSError, ssl.SSLError) as e:
                    last[name] = f"handshake failed: {e}"
                if last[name] == want:
                    took[name] = time.monotonic() - start
            if len(took) == len(self.endpoints()):
                return took
            if time.monotonic() - start > timeout:
                wrong = {n: self.describe(v) for n, v in last.items() if n not in took}
                self.fail(f"{when}: after {timeout}s these endpoints do not present leaf {leaf} "
                          f"({want[:16]}): {wrong}")
            time.sleep(0.05)

    def describe(self, fingerprint):
        for i, (_, _, fp) in enumerate(self.pool.leaves):
            if fp == fingerprint:
                return f"leaf {i} ({fp[:16]})"
        return fingerprint

    def metrics(self, service):
        return parse_metrics(urllib.request.urlopen(service.metrics_url, timeout=5).read()
                             .decode())

    def reloads(self, service, label, result):
        return self.metrics(service).get(
            ("rwg_certificate_reloads_total",
             frozenset({("certificate", label), ("result", result)})), 0.0)

    def counters(self, result):
        return {(name, label): self.reloads(svc, label, result)
                for name, svc, label, _, _ in self.endpoints()}

    # -- clients -----------------------------------------------------------------------------

    def phone(self):
        return sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.pool.ca,
                                       timeout=10)

    def register_once(self, user="1001"):
        """A new TLS connection, a full digest REGISTER; None or what went wrong."""
        try:
            conn = self.phone()
        except (OSError, ssl.SSLError) as e:
            return f"handshake: {type(e).__name__}: {e}"
        try:
            r = conn.register_with_auth(user, DEVICES[user][0], DOMAIN, expires=600)
            return None if sipclient.status(r) == 200 else f"answer: {(r or 'closed')[:60]!r}"
        finally:
            conn.close()

    def download_once(self):
        ctx = ssl.create_default_context(cafile=self.pool.ca)
        c = http.client.HTTPSConnection("127.0.0.1", self.prov_port, context=ctx, timeout=10)
        try:
            c.request("GET", f"/{self.hash}/ftp_67xxi/{PROV_FILE[0]}")
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or body != PROV_FILE[1]:
                return f"HTTP {r.status}, {len(body)} bytes"
            return None
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            return f"{type(e).__name__}: {e}"
        finally:
            c.close()

    def https_connection(self):
        ctx = ssl.create_default_context(cafile=self.pool.ca)
        raw = socket.create_connection(("127.0.0.1", self.prov_port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    def keepalive_get(self, s):
        """One GET on the open connection `s`; None or what went wrong."""
        s.sendall(f"GET /{self.hash}/ftp_67xxi/{PROV_FILE[0]} HTTP/1.1\r\nHost: localhost\r\n"
                  "\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return "the server closed the connection"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length: (\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                return "the server closed the connection mid-body"
            body += chunk
        if not head.startswith(b"HTTP/1.1 200") or body != PROV_FILE[1]:
            status_line = head.split(b"\r\n")[0]
            return f"{status_line!r}, {len(body)} bytes"
        return None

    @staticmethod
    def clients_of(port):
        """Local ports of the established TCP connections to 127.0.0.1:`port` (gRPC's client
        sockets are IPv6 ones with the IPv4-mapped address)."""
        out = set()
        for table, ip in (("/proc/net/tcp", "0100007F"),
                          ("/proc/net/tcp6", "0000000000000000FFFF00000100007F")):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, remote, state = line.split()[1:4]
                    if state == "01" and remote == f"{ip}:{port:04X}":
                        out.add(int(local.split(":")[1], 16))
        return out

    def grpc_health_once(self, service):
        """A new channel (its own subchannel, so a new TLS handshake verifying the CA) and one
        grpc.health.v1.Health/Check."""
        with open(self.pool.ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel(service.grpc_address, creds, options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.ssl_target_name_override", "localhost")])
        try:
            check = ch.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
            answer = check(b"", timeout=5)
            return None if answer == HEALTH_SERVING else f"health answer {answer!r}"
        except grpc.RpcError as e:
            return f"{e.code()}: {e.details()}"
        finally:
            ch.close()

    # -- end of each case ----------------------------------------------------------------

    def assert_healthy_then_stop(self):
        """Every service still runs and answers, stops with 0 on SIGTERM, and its gRPC
        certificate copies are gone."""
        for name, svc in self.services().items():
            self.assertTrue(svc.alive(), f"{name} exited: {svc.read_log()[-2000:]}")
            self.assertIsNone(self.grpc_health_once(svc), f"{name} gRPC health")
        self.assertIsNone(self.register_once(), "a TLS registration")
        self.assertIsNone(self.download_once(), "an HTTPS download")
        for name in ("sip-edge", "provisioning", "control"):
            code = self.services()[name].stop()
            self.assertEqual(code, 0, f"{name} exit code on SIGTERM")
        left = {d for d in self.our_grpc_dirs if os.path.exists(d)}
        self.assertEqual(left, set(), "gRPC certificate copies left behind")

    def swap_leaf(self, i, keep_mtime=False):
        cert, key, _ = self.pool.leaves[i]
        self.secret.swap(cert, key, self.pool.leaf_files(i) if keep_mtime else None)

    # -- the cases ---------------------------------------------------------------------------

    def test_100_swaps_under_tls_load(self):
        load = Load()
        long_lived = self.phone()
        self.addCleanup(long_lived.close)
        r = long_lived.register_with_auth("1002", DEVICES["1002"][0], DOMAIN, expires=600)
        self.assertEqual(sipclient.status(r), 200, r)
        lock = threading.Lock()

        def refresh():
            with lock:
                r = long_lived.register_with_auth("1002", DEVICES["1002"][0], DOMAIN,
                                                  expires=600)
            return None if sipclient.status(r) == 200 else f"answer {(r or 'closed')[:60]!r}"

        # An HTTPS keep-alive connection and a gRPC channel (one HTTP/2 connection) opened
        # before the first swap and used throughout: established connections keep working.
        https = self.https_connection()
        self.addCleanup(https.close)
        self.assertIsNone(self.keepalive_get(https))
        with open(self.pool.ca, "rb") as f:
            channel = grpc.secure_channel(self.control.grpc_address, grpc.ssl_channel_credentials(
                root_certificates=f.read()), options=[
                    ("grpc.use_local_subchannel_pool", 1),
                    ("grpc.ssl_target_name_override", "localhost")])
        self.addCleanup(channel.close)
        health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        self.assertEqual(health(b"", timeout=5), HEALTH_SERVING)
        grpc_port = self.control.ports["grpc"]
        grpc_conns = self.clients_of(grpc_port)
        self.assertEqual(len(grpc_conns), 1, f"connections to control's gRPC port: {grpc_conns}")

        def channel_call():
            try:
                answer = health(b"", timeout=5)
                return None if answer == HEALTH_SERVING else f"health answer {answer!r}"
            except grpc.RpcError as e:
                return f"{e.code()}: {e.details()}"

        load.add("registration", self.register_once, 0.02)
        load.add("https keep-alive", lambda: self.keepalive_get(https), 0.5)
        load.add("grpc long-lived channel", channel_call, 0.5)
        load.add("long-lived refresh", refresh, 0.5)
        load.add("download", self.download_once, 0.02)
        load.add("grpc control", lambda: self.grpc_health_once(self.control), 0.05)
        load.add("grpc provisioning", lambda: self.grpc_health_once(self.prov), 0.05)
        self.addCleanup(load.finish)
        loaded_before = self.counters("loaded")
        refused_before = self.counters("refused")

        pids = {"sip-edge": self.edge.proc.pid, "provisioning": self.prov.proc.pid,
                "control": self.control.proc.pid}
        rss = {name: [(0, rss_kib(pid))] for name, pid in pids.items()}
        # Half the swaps carry the pool files' (older) modification times, as cp -p would:
        # those are read at the first poll that sees them; the others (written now) only once
        # they have stayed the same for a poll, which swaps 0.3 s apart never do. So about
        # every other poll loads a pair during the storm, and the last swap (written now)
        # once the storm is over.
        started = time.monotonic()
        for i in range(100):
            self.swap_leaf(i, keep_mtime=(i % 2 == 0))
            if (i + 1) % 10 == 0:
                for name, pid in pids.items():
                    rss[name].append((i + 1, rss_kib(pid)))
            time.sleep(0.3)
        storm = time.monotonic() - started
        self.leaf = 99
        took = self.assert_all_present(99, "after the 100th swap")
        # The clients keep going a little after the last swap, then stop.
        time.sleep(1)
        load.finish()
        with lock:
            r = long_lived.register_with_auth("1002", DEVICES["1002"][0], DOMAIN, expires=600)
        self.assertIsNone(self.keepalive_get(https), "the keep-alive HTTPS connection after")
        self.assertIsNone(channel_call(), "the long-lived gRPC channel after")
        loaded = {k: v - loaded_before[k] for k, v in self.counters("loaded").items()}
        refused = {k: v - refused_before[k] for k, v in self.counters("refused").items()}

        print(f"\n  storm: 100 swaps in {storm:.1f}s; last leaf served after "
              + ", ".join(f"{n} {t:.2f}s" for n, t in took.items()))
        print("  clients ok/failed: " + ", ".join(
            f"{n} {load.ok.get(n, 0)}/{load.failed.get(n, 0)}" for n in
            ("registration", "long-lived refresh", "download", "grpc control",
             "grpc provisioning", "https keep-alive", "grpc long-lived channel")))
        print("  pairs loaded: " + ", ".join(f"{n} {int(v)}" for (n, _), v in loaded.items())
              + "; refused: " + ", ".join(f"{n} {int(v)}" for (n, _), v in refused.items()))
        slopes = {}
        for name, points in rss.items():
            slopes[name] = slope([p for p in points if p[0] >= 20])
            print(f"  RSS {name} (KiB at swap 0,10,..,100): {[v for _, v in points]}; "
                  f"slope after swap 20: {slopes[name]:.1f} KiB/swap")

        self.assertEqual(load.failed, {}, "client failures during the swaps: "
                         + "; ".join(f"{n}: {len(e)}, first {e[:3]}"
                                     for n, e in load.errors.items()))
        # The channel's connection is the one it opened before the storm: still there, so
        # the calls did not go over a new one.
        self.assertLessEqual(grpc_conns, self.clients_of(grpc_port),
                             "the gRPC channel's connection to control was replaced")
        for name in ("registration", "long-lived refresh", "download", "grpc control",
                     "grpc provisioning", "https keep-alive", "grpc long-lived channel"):
            self.assertGreater(load.ok.get(name, 0), 10, f"{name}: too few requests to mean "
                               "anything")
        self.assertEqual(sipclient.status(r), 200, f"the long-lived connection after: {r!r}")
        self.assertEqual(refused, {k: 0 for k in refused}, "pairs refused during the swaps")
        # Every other poll (1 s) of the storm sees a pair with old modification times: about
        # storm/2 loads, plus the last one. Half of that leaves room for a slow poll thread.
        for k, v in loaded.items():
            self.assertGreaterEqual(v, storm / 4, f"{k}: pairs loaded during the storm")
            self.assertLessEqual(v, 100, f"{k}: pairs loaded")
        # Every pair loaded is one that was swapped in, and the last one logged is the last.
        pool_fps = {fp[:16] for _, _, fp in self.pool.leaves}
        for name, svc in self.services().items():
            fps = re.findall(r'msg="certificate loaded" .*?fingerprint=(\w+)', svc.read_log())
            self.assertTrue(set(fps) <= pool_fps, f"{name}: unknown fingerprints loaded")
            self.assertEqual(fps[-1], self.pool.leaves[99][2][:16], f"{name}: last loaded")
        # Measured 3.6-6.0 KiB/swap on sip-edge, provisioning and control alike: the client
        # traffic's (control, with only its gRPC pair loaded ~16 times, grows as much);
        # test_reloads_keep_no_memory measures reloads alone. 20 KiB/swap is ~5 times that.
        if "ASAN_OPTIONS" not in os.environ:
            for name, s in slopes.items():
                self.assertLess(s, 20, f"{name}: RSS grows {s:.1f} KiB per swap: {rss[name]}")
        self.assert_healthy_then_stop()

    def log_offsets(self):
        return {name: len(svc.read_log()) for name, svc in self.services().items()}

    def logs_since(self, offsets):
        return {name: svc.read_log()[offsets[name]:] for name, svc in self.services().items()}

    def test_broken_pairs_are_refused_and_the_one_in_use_stays(self):
        cert, key, _ = self.pool.leaves[101]
        broken = [
            ("a key that is not the certificate's", cert, self.pool.leaves[102][1],
             "the private key is not the certificate's"),
            ("an expired certificate", self.pool.expired, self.pool.leaves[0][1],
             "expired on 2020-01-02T00:00:00Z"),
            ("a certificate not valid yet", self.pool.future, self.pool.leaves[0][1],
             "not valid before 2099-01-01T00:00:00Z"),
            ("a truncated certificate", cert[:len(cert) // 2], key, "no PEM certificate"),
            ("a garbage key", cert, b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n"
             b"-----END PRIVATE KEY-----\n", "no PEM private key"),
            ("an empty key file", cert, b"", "no PEM private key"),
        ]
        labels = {"control": ["grpc"], "sip-edge": ["sip_tls", "grpc"],
                  "provisioning": ["https", "grpc"]}
        for n, (what, bad_cert, bad_key, error) in enumerate(broken):
            with self.subTest(what):
                refused_before = self.counters("refused")
                loaded_before = self.counters("loaded")
                offsets = self.log_offsets()
                self.secret.swap(bad_cert, bad_key)
                want = {k: v + 1 for k, v in refused_before.items()}
                try:
                    rwgtest.wait_until(f"{what}: refused by every endpoint",
                                       lambda: self.counters("refused") == want, timeout=5)
                except AssertionError:
                    self.fail(f"{what}: refused counters {self.counters('refused')}, want "
                              f"{want}; logs: {self.logs_since(offsets)}")
                if n == 0:
                    # Refused once, not again at every poll while the files stay the same.
                    time.sleep(2.2)
                    self.assertEqual(self.counters("refused"), want, f"{what}: refused again")
                logs = self.logs_since(offsets)
                for name, ls in labels.items():
                    for label in ls:
                        lines = re.findall(
                            r'.*msg="new certificate refused; the one in use stays" '
                            rf'certificate={label} .*', logs[name])
                        self.assertEqual(len(lines), 1, f"{what}: {name} {label}: {logs[name]}")
                        self.assertIn("level=error", lines[0])
                        self.assertIn(error, lines[0], f"{what}: {name} {label}")
                        self.assertIn(f"in_use={self.pool.leaves[self.leaf][2][:16]}", lines[0])
                self.assertEqual(self.counters("loaded"), loaded_before, what)
                served = self.served()
                self.assertEqual(served, {k: self.pool.leaves[self.leaf][2] for k in served},
                                 f"{what}: not the pair in use any more")
                self.assertIsNone(self.register_once(), f"{what}: a TLS registration")
                self.assertIsNone(self.download_once(), f"{what}: an HTTPS download")
                for name, svc in self.services().items():
                    self.assertIsNone(self.grpc_health_once(svc), f"{what}: {name} gRPC")
                for name, svc in self.services().items():
                    m = self.metrics(svc)
                    for label in labels[name]:
                        days = m[("rwg_certificate_expiry_days",
                                  frozenset({("certificate", label)}))]
                        self.assertTrue(1 < days <= 2, f"{what}: {name} {label}: the expiry "
                                        f"gauge follows the pair in use (2 days), not {days}")
        # A good pair after them all is taken.
        loaded_before = self.counters("loaded")
        self.swap_leaf(101)
        took = self.assert_all_present(101, "a good pair after the broken ones")
        print("\n  good pair after broken ones served after "
              + ", ".join(f"{n} {t:.2f}s" for n, t in took.items()))
        self.leaf = 101
        rwgtest.wait_until("loaded counters", lambda: self.counters("loaded") == {
            k: v + 1 for k, v in loaded_before.items()}, timeout=3)
        self.assert_healthy_then_stop()

    def same_size_leaf(self):
        cert, key, _ = self.pool.leaves[self.leaf]
        for i in list(range(101, LEAVES)) + list(range(100)):
            c, k, _ = self.pool.leaves[i]
            if len(c) == len(cert) and len(k) == len(key):
                return i
        self.skipTest("no pool pair with the sizes of the one in use")

    def test_sighup_reads_the_certificates_at_once(self):
        # Rewritten in place with the same size, inode and modification time: the stat stamp
        # the watchers poll stays the same, so only SIGHUP can make them read the new pair.
        j = self.same_size_leaf()
        stamp = lambda p: (lambda st: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))(
            os.stat(p))
        before = [stamp(p) for p in (self.secret.cert, self.secret.key)]
        for path, data in ((self.secret.cert, self.pool.leaves[j][0]),
                           (self.secret.key, self.pool.leaves[j][1])):
            st = os.stat(path)
            with open(path, "r+b") as f:
                f.write(data)
                f.truncate()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual([stamp(p) for p in (self.secret.cert, self.secret.key)], before)
        loaded_before = self.counters("loaded")
        offsets = self.log_offsets()
        for svc in self.services().values():
            svc.proc.send_signal(signal.SIGHUP)
        took = self.assert_all_present(j, "after SIGHUP", timeout=3)
        self.leaf = j
        print("\n  after SIGHUP the new pair is served after "
              + ", ".join(f"{n} {t:.2f}s" for n, t in took.items()))
        for name in ("sip-edge SIP/TLS", "provisioning HTTPS"):
            self.assertLess(took[name], 1.0, f"{name}: SIGHUP reads at once")
        rwgtest.wait_until("loaded counters", lambda: self.counters("loaded") == {
            k: v + 1 for k, v in loaded_before.items()}, timeout=3)
        logs = self.logs_since(offsets)
        for name, svc in self.services().items():
            self.assertTrue(svc.alive(), f"{name} exited on SIGHUP: {logs[name]}")
            self.assertRegex(logs[name], r'msg="SIGHUP: reading the certificates again"[^\n]*\n'
                             r'(.*\n)*.*msg="certificate loaded"', name)
            self.assertIn(f"fingerprint={self.pool.leaves[j][2][:16]}", logs[name], name)
        # SIGHUP with nothing changed: read, found the same, nothing loaded.
        loaded_before = self.counters("loaded")
        offsets = self.log_offsets()
        for svc in self.services().values():
            svc.proc.send_signal(signal.SIGHUP)
        rwgtest.wait_until("certificate unchanged logged", lambda: all(
            'msg="certificate unchanged"' in t for t in self.logs_since(offsets).values()),
            timeout=5)
        self.assertEqual(self.counters("loaded"), loaded_before)
        self.assertEqual(self.served(), {n: self.pool.leaves[j][2] for n in self.served()})
        self.assert_healthy_then_stop()

    def test_reloads_keep_no_memory(self):
        """RELOADS (150) pairs loaded in a row (swap + SIGHUP, no client load): RSS per
        reload."""
        pids = {"sip-edge": self.edge.proc.pid, "provisioning": self.prov.proc.pid,
                "control": self.control.proc.pid}
        rss = {name: [(0, rss_kib(pid))] for name, pid in pids.items()}
        loaded_before = self.counters("loaded")
        for i in range(RELOADS):
            self.swap_leaf(i % 100)
            for svc in self.services().values():
                svc.proc.send_signal(signal.SIGHUP)
            want = {k: v + i + 1 for k, v in loaded_before.items()}
            rwgtest.wait_until(f"reload {i + 1}", lambda: self.counters("loaded") == want,
                               timeout=5)
            if (i + 1) % 10 == 0:
                for name, pid in pids.items():
                    rss[name].append((i + 1, rss_kib(pid)))
        self.leaf = (RELOADS - 1) % 100
        self.assert_all_present(self.leaf, f"after {RELOADS} reloads")
        # gRPC's copies: the pair in use and the one before it, nothing older, private (and
        # the lock file the service holds while it runs).
        for d in self.our_grpc_dirs:
            entries = sorted(e for e in os.listdir(d) if e != ".lock")
            self.assertEqual(entries, ["current", f"v{RELOADS}", f"v{RELOADS + 1}"], d)
            self.assertEqual(os.readlink(os.path.join(d, "current")), f"v{RELOADS + 1}", d)
            self.assertEqual(rwgtest.read_bytes(os.path.join(d, "current", "tls.key")),
                             self.pool.leaves[self.leaf][1], d)
            for v in entries[1:]:
                for f in ("tls.crt", "tls.key"):
                    mode = os.stat(os.path.join(d, v, f)).st_mode & 0o777
                    self.assertEqual(mode, 0o600, f"{d}/{v}/{f}")
        slopes = {name: slope([p for p in points if p[0] >= 30]) for name, points in rss.items()}
        for name, points in rss.items():
            print(f"\n  RSS {name} (KiB at reload 0,10,..,{RELOADS}): {[v for _, v in points]}; "
                  f"slope after reload 30: {slopes[name]:.2f} KiB/reload", end="")
        print()
        # Measured 0.5-1.1 KiB/reload on the three services, of which 0.3-0.65 KiB also
        # without any new pair (the same loop with SIGHUP on unchanged files: log lines,
        # metrics scrapes, allocator growth). One parsed pair kept per reload (X509, EC key,
        # the two PEM texts: several KiB) or an SSL_CTX (tens of KiB) would pass 2.5 KiB.
        # Under AddressSanitizer freed memory sits in quarantine: RSS says nothing there
        # (its leak check does).
        if "ASAN_OPTIONS" not in os.environ:
            for name, s in slopes.items():
                self.assertLess(s, 2.5, f"{name}: RSS grows {s:.2f} KiB per reload: {rss[name]}")
        self.assert_healthy_then_stop()


class BadPairAtStartTest(rwgtest.TempDirTest):
    """A service given a bad pair does not start: exit code 2, the option named."""

    def setUp(self):
        super().setUp()
        self.pool = POOL
        good_cert, good_key = self.pool.leaf_files(0)
        self.certs = {"ca": self.pool.ca, "cert": good_cert, "key": good_key}
        # sip-edge reads its certificates once the gateway configuration is there.
        rwgtest.start_control(self, ADMIN_PASSWORD)
        self.ctl.ok("config", "set", f"public_name={DOMAIN}", "icp.host=127.0.0.2",
                    f"icp.sip_port={rwgtest.free_port()}", "icp.sip_transports=tcp")
        self.store = os.path.join(self.tmp, "store")
        os.mkdir(self.store)
        self.token = os.path.join(self.tmp, "token")
        with open(self.token, "w") as f:
            f.write("provisioning-store-token-0123456789\n")
        self.expired = os.path.join(self.tmp, "expired.crt")
        with open(self.expired, "wb") as f:
            f.write(self.pool.expired)

    def edge(self, cert, key):
        return ["--sip-tls-listen", f"127.0.0.1:{rwgtest.free_port()}",
                "--sip-tcp-listen", f"127.0.0.1:{rwgtest.free_port()}",
                "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}",
                "--sip-tls-cert-file", cert, "--sip-tls-key-file", key]

    def prov(self, cert, key):
        return ["--listen", f"127.0.0.1:{rwgtest.free_port()}", "--https-cert-file", cert,
                "--https-key-file", key, "--store-dir", self.store, "--api-token-file",
                self.token]

    def check(self, cases):
        for binary, args, option, error in cases:
            with self.subTest(f"{binary} {option} {error}"):
                code, out = self.start(binary, args)
                self.assertEqual(code, 2, f"{binary} {option}: exit code; output: {out}")
                self.assertIn(option, out, out)
                self.assertIn(error, out, out)

    def start(self, binary, args):
        before = grpc_dirs()
        r = subprocess.run([os.path.join(rwgtest.BIN, binary), "--grpc-listen", "127.0.0.1:0",
                            "--metrics-listen", "127.0.0.1:0", "--redis-address",
                            f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key]
                           + args, capture_output=True, text=True, timeout=30,
                           env={**os.environ, "TMPDIR": self.tmp})
        good = self.pool.leaves[0][0]
        left = set()
        for d in grpc_dirs() - before:
            try:
                if rwgtest.read_bytes(os.path.join(d, "current", "tls.crt")) == good:
                    left.add(d)
            except OSError:
                pass
        self.assertEqual(left, set(), f"{binary}: gRPC certificate copies left behind")
        return r.returncode, r.stdout + r.stderr

    def test_bad_tls_pairs_stop_the_start(self):
        good_cert, good_key = self.pool.leaf_files(0)
        _, other_key = self.pool.leaf_files(1)
        grpc_ok = ["--tls-cert-file", good_cert, "--tls-key-file", good_key]
        self.check([
            ("sip-edge", self.edge(good_cert, other_key) + grpc_ok, "sip-tls-key-file",
             "not the certificate's"),
            ("sip-edge", self.edge(self.expired, good_key) + grpc_ok, "sip-tls-cert-file",
             "expired on"),
            ("provisioning", self.prov(good_cert, other_key) + grpc_ok, "https-key-file",
             "not the certificate's"),
            ("provisioning", self.prov(self.expired, good_key) + grpc_ok, "https-cert-file",
             "expired on"),
        ])

    def test_bad_grpc_pairs_stop_the_start(self):
        good_cert, good_key = self.pool.leaf_files(0)
        _, other_key = self.pool.leaf_files(1)
        self.check([
            ("sip-edge", self.edge(good_cert, good_key) + [
                "--tls-cert-file", good_cert, "--tls-key-file", other_key],
             "tls-key-file", "not the certificate's"),
            ("provisioning", self.prov(good_cert, good_key) + [
                "--tls-cert-file", self.expired, "--tls-key-file", good_key],
             "tls-cert-file", "expired on"),
            ("control", ["--admin-password-file", self.token, "--tls-cert-file", good_cert,
                         "--tls-key-file", other_key], "tls-key-file", "not the certificate's"),
        ])

if __name__ == "__main__":
    unittest.main()
