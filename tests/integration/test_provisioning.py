"""Integration: the provisioning HTTPS service (R-PROV, R-HASH) against curl.

Redis and control are real; the hash key is made with rwgctl; phones are played by curl over
HTTPS with the test CA. The store is a directory of the files a phone fetches.
"""
import asyncio
import hashlib
import http.server
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.request

import rwgtest

ADMIN_PASSWORD = "provisioning-test-admin"
MAC = "0800A1B2C3D4"


class ProvisioningTest(rwgtest.TempDirTest):
    ban_misses = 5
    ban_mac_misses = 4

    def setUp(self):
        super().setUp()
        self.certs = rwgtest.make_certs(self.tmp)
        rwgtest.start_control(self, ADMIN_PASSWORD)
        self.hash = self.ctl.json("hash", "generate")["key"]

        self.store = os.path.join(self.tmp, "store")
        os.mkdir(self.store)
        self.files = {
            "aastra.cfg": b"sip proxy ip: rwg.example.net\nsip proxy port: 5061\n",
            "6867i.cfg": b"# model file\ntime server disabled: 0\n",
            f"{MAC}.cfg": b"sip line1 user name: 1001\nsip line1 password: x\n" * 20,
            "CA_Mitel.pem": rwgtest.read_bytes(self.certs["ca"]),
            "6867i.st": os.urandom(3 * 1024 * 1024 + 17),
        }
        for name, data in self.files.items():
            with open(os.path.join(self.store, name), "wb") as f:
                f.write(data)
        # Next to the store, never to be served.
        with open(os.path.join(self.tmp, "outside.cfg"), "w") as f:
            f.write("not for phones\n")
        token = os.path.join(self.tmp, "store-token")
        with open(token, "w") as f:
            f.write("provisioning-store-token-0123456789\n")
        self.port = rwgtest.free_port()
        self.prov = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{self.port}", "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"], "--store-dir", self.store,
            "--api-token-file", token,
            "--ban-misses", str(self.ban_misses), "--ban-window-seconds", "60",
            "--ban-seconds", "4", "--threads", "2", "--xml-timeout-ms", "1000",
            "--ban-mac-misses", str(self.ban_mac_misses),
            "--xml-ca-file", self.certs["ca"]]).start()
        self.addCleanup(self.prov.stop)

    # -- helpers ---------------------------------------------------------------------------

    def curl(self, path, *args, source=None, method=None, port=None):
        """(status, headers, body) of one HTTPS request; status 0 when the connection failed."""
        out = os.path.join(self.tmp, "body")
        cmd = ["curl", "-s", "--path-as-is", "--cacert", self.certs["ca"], "-o", out,
               "-D", "-", "-w", "\n%{size_download} %{http_code}", "--max-time", "10"]
        if source:
            cmd += ["--interface", source]
        if method == "HEAD":
            cmd += ["-I"]
        cmd += list(args) + [f"https://localhost:{port or self.port}{path}"]
        r = subprocess.run(cmd, capture_output=True, timeout=30)
        text = r.stdout.decode(errors="replace")
        headers, _, tail = text.rpartition("\n")
        size, _, code = tail.partition(" ")
        status = int(code) if code.isdigit() else 0
        body = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
            os.remove(out)
        if method == "HEAD":
            body = b"" if size == "0" else b"?" * int(size)  # -I writes the headers to -o
        return status, headers, body

    def header(self, headers, name):
        m = re.search(rf"(?im)^{name}: (.*?)\r?$", headers)
        return m.group(1) if m else None

    def path(self, name, key=None):
        return f"/{key or self.hash}/ftp_67xxi/{name}"

    def metrics(self, service=None):
        service = service or self.prov
        return urllib.request.urlopen(
            f"http://127.0.0.1:{service.ports['metrics']}/metrics", timeout=5).read().decode()

    def another(self, name, *args, host="127.0.0.1"):
        """A second provisioning instance on the same Redis and store, with `args`; returns
        (service, port)."""
        port = rwgtest.free_port()
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        svc = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", listen, "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"], "--store-dir", self.store,
            "--api-token-file", os.path.join(self.tmp, "store-token")] + list(args))
        svc.log_path = os.path.join(self.tmp, f"provisioning-{name}.log")
        svc.start()
        self.addCleanup(svc.stop)
        return svc, port

    def tls(self, port, source=None, timeout=10):
        """A TLS connection to the service, from `source` when given."""
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(s.close)
        return s

    def get(self, s, name):
        """(status, body) of one keep-alive GET on the open connection `s`."""
        s.sendall(f"GET {self.path(name)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return 0, b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split(b" ", 2)[1]), body

    def closed_by_server(self, s):
        """True when the server closed `s` (reads nothing, or fails)."""
        try:
            s.settimeout(5)
            return s.recv(100) == b""
        except TimeoutError:
            return False
        except (ssl.SSLError, ConnectionError, OSError):
            return True

    def fake_ipbx(self, cert, key, seen=None):
        """An HTTPS server standing for the iPBX's XML port, with `cert`; answers every path
        with an XML screen naming it (after 3 s for paths with "slow"). Returns (server, port);
        the requests' (path, X-Forwarded-For) are appended to `seen`. A path with "status<N>"
        is answered with status N."""
        seen = [] if seen is None else seen
        port = rwgtest.free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("X-Forwarded-For")))
                if "slow" in self.path:
                    time.sleep(3)
                body = f"<AastraIPPhoneTextScreen><Text>{self.path}</Text>" \
                       "</AastraIPPhoneTextScreen>".encode()
                code = re.search(r"status(\d+)", self.path)
                self.send_response(int(code.group(1)) if code else 200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server, port

    # -- tests -----------------------------------------------------------------------------

    def test_each_file_kind_with_validators_head_and_ranges(self):
        types = {"aastra.cfg": "text/plain", "6867i.cfg": "text/plain", f"{MAC}.cfg": "text/plain",
                 "CA_Mitel.pem": "application/x-pem-file", "6867i.st": "application/octet-stream"}
        for name, data in self.files.items():
            with self.subTest(name):
                status, headers, body = self.curl(self.path(name))
                self.assertEqual(status, 200, headers)
                self.assertEqual(hashlib.sha256(body).hexdigest(),
                                 hashlib.sha256(data).hexdigest())
                self.assertEqual(self.header(headers, "Content-Length"), str(len(data)))
                self.assertTrue(self.header(headers, "Content-Type").startswith(types[name]))
                self.assertIsNotNone(self.header(headers, "ETag"))
                self.assertIsNotNone(self.header(headers, "Last-Modified"))
        # A lower-case MAC file name is the same file.
        status, _, body = self.curl(self.path(f"{MAC.lower()}.cfg"))
        self.assertEqual((status, body), (200, self.files[f"{MAC}.cfg"]))
        # HEAD: the headers of the GET, no body.
        status, headers, body = self.curl(self.path("6867i.st"), method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(self.header(headers, "Content-Length"), str(len(self.files["6867i.st"])))
        self.assertEqual(body, b"")
        # Conditional GETs.
        _, headers, _ = self.curl(self.path("aastra.cfg"))
        etag, modified = self.header(headers, "ETag"), self.header(headers, "Last-Modified")
        status, _, body = self.curl(self.path("aastra.cfg"), "-H", f"If-None-Match: {etag}")
        self.assertEqual((status, body), (304, b""))
        status, _, _ = self.curl(self.path("aastra.cfg"), "-H", f"If-Modified-Since: {modified}")
        self.assertEqual(status, 304)
        status, _, _ = self.curl(self.path("aastra.cfg"), "-H", 'If-None-Match: "stale"')
        self.assertEqual(status, 200)
        # The file changes: a new validator, the new content.
        time.sleep(0.01)
        with open(os.path.join(self.store, "aastra.cfg"), "ab") as f:
            f.write(b"sip proxy port: 5062\n")
        status, headers, body = self.curl(self.path("aastra.cfg"), "-H", f"If-None-Match: {etag}")
        self.assertEqual(status, 200)
        self.assertNotEqual(self.header(headers, "ETag"), etag)
        self.assertTrue(body.endswith(b"5062\n"))
        # Ranges, for firmware downloads that resume.
        fw = self.files["6867i.st"]
        status, headers, body = self.curl(self.path("6867i.st"), "-r", "1000000-1000099")
        self.assertEqual(status, 206)
        self.assertEqual(body, fw[1000000:1000100])
        self.assertEqual(self.header(headers, "Content-Range"),
                         f"bytes 1000000-1000099/{len(fw)}")
        status, _, body = self.curl(self.path("6867i.st"), "-r", "3145000-")
        self.assertEqual((status, body), (206, fw[3145000:]))
        status, headers, _ = self.curl(self.path("6867i.st"), "-r", f"{len(fw)}-")
        self.assertEqual(status, 416)
        self.assertEqual(self.header(headers, "Content-Range"), f"bytes */{len(fw)}")
        # Keep-alive: several files over one connection.
        out = subprocess.run(["curl", "-s", "-v", "--cacert", self.certs["ca"], "-o", "/dev/null",
                              "-o", "/dev/null",
                              f"https://localhost:{self.port}{self.path('aastra.cfg')}",
                              f"https://localhost:{self.port}{self.path('6867i.cfg')}"],
                             capture_output=True, timeout=30).stderr.decode()
        self.assertIn("Re-using existing connection", out)
        self.assertRegex(self.metrics(),
                         r'rwg_provisioning_requests_total\{kind="firmware",status="206"\} 2')

    def test_tls_below_1_2_is_refused(self):
        rwgtest.assert_old_tls_refused(
            self, self.port, f"GET {self.path('aastra.cfg')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _, _ = self.curl(self.path("aastra.cfg"), "--tlsv1.2", "--tls-max", "1.2")
        self.assertEqual(status, 200)

    def test_wrong_hash_and_hostile_paths(self):
        near = self.hash[:-1] + ("0" if self.hash[-1] != "0" else "1")
        answers = set()
        for path in (self.path("aastra.cfg", near), self.path("aastra.cfg", "x"),
                     self.path("aastra.cfg", self.hash.upper()), "/ftp_67xxi/aastra.cfg", "/"):
            status, _, body = self.curl(path, source="127.0.0.4")  # 5 misses: banned after
            self.assertEqual(status, 404, path)
            answers.add(body)
        self.assertEqual(len(answers), 1, "the same 404 whatever the near-miss")
        h = self.hash
        hostile = [f"/{h}/ftp_67xxi/../outside.cfg", f"/{h}/ftp_67xxi/%2e%2e/outside.cfg",
                   f"/{h}/ftp_67xxi/..%2foutside.cfg", f"/{h}/ftp_67xxi/%2E%2E%2Foutside.cfg",
                   f"/{h}/ftp_67xxi/outside.cfg%00.cfg", f"/{h}/ftp_67xxi/..%5coutside.cfg",
                   f"/{h}/ftp_67xxi/" + "a" * 3000, f"/{h}/ftp_67xxi/.", f"/{h}/ftp_67xxi/"]
        os.symlink(os.path.join(self.tmp, "outside.cfg"), os.path.join(self.store, "link.cfg"))
        hostile.append(f"/{h}/ftp_67xxi/link.cfg")
        for path in hostile:
            with self.subTest(path[len(h) + 1:60]):
                status, _, body = self.curl(path)
                self.assertIn(status, (400, 404), path)
                self.assertNotIn(b"not for phones", body)
        status, _, _ = self.curl(self.path("aastra.cfg"), "-X", "DELETE")
        self.assertEqual(status, 405)
        # The service is still up and serving.
        self.assertEqual(self.curl(self.path("aastra.cfg"))[0], 200)
        # The access log names the request without the hash.
        log = self.prov.read_log()
        self.assertRegex(log, r'path="?/<hash>/ftp_67xxi/aastra.cfg')
        self.assertNotIn(self.hash, log)

    def test_a_source_missing_the_hash_is_banned_then_released(self):
        for _ in range(self.ban_misses):
            self.assertEqual(self.curl(self.path("aastra.cfg", "guess"))[0], 404)
        # Banned: even the right path is refused to this source...
        self.assertIn(self.curl(self.path("aastra.cfg"))[0], (0, 403))
        # ...while a phone elsewhere is not affected.
        self.assertEqual(self.curl(self.path("aastra.cfg"), source="127.0.0.2")[0], 200)
        rwgtest.wait_until("the ban stored", lambda: "prov:127.0.0.1" in self.ctl.ok(
            "ban", "list"), timeout=5)
        self.assertRegex(self.metrics(), r"(?m)^rwg_provisioning_bans_total 1")
        self.assertRegex(self.metrics(), rf"(?m)^rwg_provisioning_hash_misses_total {self.ban_misses}")
        # The admin lifts it.
        self.ctl.ok("ban", "remove", "prov:127.0.0.1")
        rwgtest.wait_until("lifted", lambda: self.curl(self.path("aastra.cfg"))[0] == 200,
                           timeout=5)
        # Banned again; this time the ban runs out by itself (4 s here).
        for _ in range(self.ban_misses):
            self.curl(self.path("aastra.cfg", "guess"))
        self.assertIn(self.curl(self.path("aastra.cfg"))[0], (0, 403))
        rwgtest.wait_until("expired", lambda: self.curl(self.path("aastra.cfg"))[0] == 200,
                           timeout=10)

    def test_mac_enumeration_is_banned(self):
        """Asking for many MAC files the store does not have bans the source (4 different ones
        here); asking again for the same one, for files that exist, or for the common files a
        site may not have (startup.cfg, <model>.cfg, security.tuz, ...) does not count."""
        guesser, phone = "127.0.0.5", "127.0.0.6"
        for _ in range(10):
            for name in (f"{MAC}.cfg", f"{MAC.lower()}.cfg", "aastra.cfg", "startup.cfg",
                         "6869i.cfg", "security.tuz", "6869i.st", "lang_fr.txt",
                         "0800A1B2C3FF.cfg"):
                self.assertIn(self.curl(self.path(name), source=phone)[0], (200, 404), name)
        self.assertEqual(self.curl(self.path("aastra.cfg"), source=phone)[0], 200,
                         "a phone asking for its own absent file is not banned")
        for i in range(self.ban_mac_misses):
            self.assertEqual(self.curl(self.path(f"0800A1B2C4{i:02X}.cfg"), source=guesser)[0],
                             404)
        self.assertIn(self.curl(self.path("aastra.cfg"), source=guesser)[0], (0, 403))
        self.assertEqual(self.curl(self.path("aastra.cfg"), source=phone)[0], 200)
        rwgtest.wait_until("the ban stored", lambda: "prov:127.0.0.5" in self.ctl.ok(
            "ban", "list"), timeout=5)
        metrics = self.metrics()
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_bans_total 1")
        self.assertRegex(metrics, rf"(?m)^rwg_provisioning_mac_misses_total {10 + 4}")
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_hash_misses_total 0")

    def test_phone_fetches_are_recorded_for_the_inventory(self):
        """A phone's GET of its <MAC>.cfg (the lower-case name too) is in rwg:prov:fetched
        within 3 s: the time and the phone's address. A HEAD, other files and a 404 for a MAC
        file the store does not have leave nothing."""
        key, absent = "rwg:prov:fetched", "0800A1B2C3FF"
        fetched = lambda: self.redis.cli("HGET", key, MAC)
        before = int(time.time() * 1000)
        self.assertEqual(self.curl(self.path(f"{MAC}.cfg"), source="127.0.0.7",
                                   method="HEAD")[0], 200)
        self.assertEqual(self.curl(self.path("aastra.cfg"), source="127.0.0.7")[0], 200)
        self.assertEqual(self.curl(self.path(f"{absent}.cfg"), source="127.0.0.7")[0], 404)
        self.assertEqual(self.curl(self.path(f"{MAC}.cfg"), source="127.0.0.8")[0], 200)
        value = rwgtest.wait_until("the fetch recorded", fetched, timeout=3)[0]
        ms, _, source = value.partition(",")
        self.assertEqual(source, "127.0.0.8")
        self.assertGreaterEqual(int(ms), before)
        self.assertLessEqual(int(ms), int(time.time() * 1000))

        # The lower-case name is the same phone's file.
        self.assertEqual(self.curl(self.path(f"{MAC.lower()}.cfg"), source="127.0.0.9")[0], 200)
        rwgtest.wait_until("the second fetch recorded",
                           lambda: fetched()[0].endswith(",127.0.0.9"), timeout=3)
        # Every note made before is written by now: only the phone's file is there.
        self.assertEqual(self.redis.cli("HKEYS", key), [MAC])
        self.assertEqual(self.redis.cli("HEXISTS", key, absent), ["0"])
        metrics = self.metrics()
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_phone_fetches_total 2$")  # no HEAD
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_fetch_records_dropped_total 0$")

    def test_ipv6_sources_are_banned_by_their_64(self):
        """Over IPv6 the misses and the ban go by the source's /64 (::1 is in ::/64)."""
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        svc, port = self.another("v6", "--ban-misses", "3", host="::1")
        url = f"https://[::1]:{port}"

        def get(path):
            r = subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}",
                                "--max-time", "10", url + path], capture_output=True, timeout=30)
            return int(r.stdout or b"0")

        self.assertEqual(get(self.path("aastra.cfg")), 200)
        for _ in range(3):
            self.assertEqual(get(self.path("aastra.cfg", "guess")), 404)
        self.assertIn(get(self.path("aastra.cfg")), (0, 403))
        rwgtest.wait_until("the ban stored", lambda: "prov:::/64" in self.ctl.ok(
            "ban", "list"), timeout=5)
        self.ctl.ok("ban", "remove", "prov:::/64")
        rwgtest.wait_until("lifted", lambda: get(self.path("aastra.cfg")) == 200, timeout=5)

    def test_xml_features_are_proxied_to_the_ipbx(self):
        """Paths under the hash other than the files go to the iPBX's XML port (TLS) with their
        path and query; a slow iPBX gives 504, an absent one 502, both quickly."""
        seen = []
        server, upstream_port = self.fake_ipbx(self.certs["cert"], self.certs["key"], seen)
        self.ctl.ok("config", "set", "icp.host=localhost",
                    f"icp.xml_destination_port={upstream_port}")
        target = f"/{self.hash}/omm.mghc/?key=20&na=1234"
        rwgtest.wait_until("proxied", lambda: self.curl(target)[0] == 200, timeout=5)
        status, headers, body = self.curl(target)
        self.assertEqual(status, 200)
        self.assertIn(f"<Text>{target}</Text>".encode(), body, "path and query kept")
        self.assertTrue(self.header(headers, "Content-Type").startswith("text/xml"))
        self.assertEqual(seen[-1][1], "127.0.0.1")
        self.assertRegex(self.metrics(), r"rwg_provisioning_upstream_seconds_count [1-9]")
        # HEAD: the iPBX's status and length, no body, no waiting for one.
        status, headers, body = self.curl(target, method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(self.header(headers, "Content-Length"),
                         str(len(f"<AastraIPPhoneTextScreen><Text>{target}</Text>"
                                 "</AastraIPPhoneTextScreen>")))
        # The iPBX's status comes back as it is, even one without a name.
        self.assertEqual(self.curl(f"/{self.hash}/status404/feature")[0], 404)
        self.assertEqual(self.curl(f"/{self.hash}/status299/feature")[0], 299)
        # The access log line is written once the answer is sent, maybe after curl has it.
        rwgtest.wait_until("the 299 logged", lambda: "status=299" in self.prov.read_log(),
                           timeout=5)
        # A slow iPBX: 504 after the timeout (1 s here), not after its answer.
        started = time.monotonic()
        status, _, body = self.curl(f"/{self.hash}/slow/feature")
        self.assertEqual(status, 504, body)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertIn(b"did not answer", body)
        # No iPBX at all: 502 at once.
        server.shutdown()
        server.server_close()
        started = time.monotonic()
        status, _, body = self.curl(target)
        self.assertEqual(status, 502)
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertEqual(self.curl(self.path("aastra.cfg"))[0], 200, "files are still served")

    def test_xml_proxy_verifies_the_ipbx(self):
        """The iPBX's certificate and host name are verified: by default against the system's
        CA store, so an iPBX with a certificate of a private CA is refused (502) unless that CA
        is given with --xml-ca-file (as the other tests do); --xml-insecure-skip-verify turns
        verification off and warns at start. A certificate for another name is refused even
        with the right CA."""
        _, upstream_port = self.fake_ipbx(self.certs["cert"], self.certs["key"])
        self.ctl.ok("config", "set", "icp.host=localhost",
                    f"icp.xml_destination_port={upstream_port}")
        target = f"/{self.hash}/omm.mghc/?key=20&na=1234"
        rwgtest.wait_until("proxied with the CA", lambda: self.curl(target)[0] == 200, timeout=5)
        default, default_port = self.another("verify-default", "--xml-timeout-ms", "2000")
        status, _, body = self.curl(target, port=default_port)
        self.assertEqual(status, 502, body)
        self.assertIn("certificate verify failed", default.read_log())
        insecure, insecure_port = self.another("insecure", "--xml-insecure-skip-verify",
                                               "--xml-timeout-ms", "2000")
        self.assertRegex(insecure.read_log(), r"(?m)level=warn.*not verified.*xml-insecure")
        self.assertEqual(self.curl(target, port=insecure_port)[0], 200)
        self.assertEqual(self.curl(self.path("aastra.cfg"), port=default_port)[0], 200)

        # A certificate of the right CA for another name.
        def run(*args):
            subprocess.run(args, check=True, cwd=self.tmp, capture_output=True)
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=other.example", "-keyout", "other.key", "-out", "other.csr")
        with open(os.path.join(self.tmp, "other-ext"), "w") as f:
            f.write("subjectAltName=DNS:other.example\n")
        run("openssl", "x509", "-req", "-in", "other.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "other-ext", "-out", "other.pem")
        _, other_port = self.fake_ipbx(os.path.join(self.tmp, "other.pem"),
                                       os.path.join(self.tmp, "other.key"))
        self.ctl.ok("config", "set", f"icp.xml_destination_port={other_port}")
        rwgtest.wait_until("the name refused", lambda: self.curl(target)[0] == 502, timeout=5)
        rwgtest.wait_until("insecure: proxied", lambda: self.curl(
            target, port=insecure_port)[0] == 200, timeout=5)

    def test_200_concurrent_firmware_downloads(self):
        """200 phones fetch a 40 MB firmware at once, and 200 more their small files: every
        download completes with the right checksum."""
        firmware = os.urandom(40 * 1024 * 1024)
        with open(os.path.join(self.store, "6869i.st"), "wb") as f:
            f.write(firmware)
        want = {"6869i.st": hashlib.sha256(firmware).hexdigest()}
        for name in ("aastra.cfg", f"{MAC}.cfg", "CA_Mitel.pem"):
            want[name] = hashlib.sha256(self.files[name]).hexdigest()
        ctx = ssl.create_default_context(cafile=self.certs["ca"])

        async def fetch(i, name):
            # From 20 addresses, as phones are: one source holds 32 connections at most.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=ctx, server_hostname="localhost",
                local_addr=(f"127.0.1.{i % 20 + 1}", 0))
            writer.write(f"GET {self.path(name)} HTTP/1.1\r\nHost: localhost\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            digest = hashlib.sha256()
            left = length
            while left:
                chunk = await reader.read(min(left, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            writer.close()
            return name, status, left, digest.hexdigest()

        async def everyone():
            names = ["6869i.st"] * 200 + [("aastra.cfg", f"{MAC}.cfg", "CA_Mitel.pem")[i % 3]
                                          for i in range(200)]
            return await asyncio.gather(*(fetch(i, n) for i, n in enumerate(names)))

        started = time.monotonic()
        results = asyncio.run(everyone())
        elapsed = time.monotonic() - started
        self.assertEqual(len(results), 400)
        for name, status, left, digest in results:
            self.assertEqual((status, left), (200, 0), name)
            self.assertEqual(digest, want[name], name)
        print(f"\n400 downloads (8 GB of firmware) in {elapsed:.1f} s")
        self.assertIsNone(self.prov.proc.poll())

    def test_connections_over_the_limit_are_closed(self):
        port = rwgtest.free_port()
        small = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{port}", "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"], "--store-dir", self.store,
            "--api-token-file", os.path.join(self.tmp, "store-token"), "--threads", "1",
            "--max-connections", "2"])
        small.log_path = os.path.join(self.tmp, "provisioning-small.log")
        small.start()
        self.addCleanup(small.stop)
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        held = []
        for _ in range(2):  # two idle phones hold their connections
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                server_hostname="localhost")
            self.addCleanup(s.close)
            held.append(s)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            extra = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                    server_hostname="localhost")
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            if not extra.recv(100):
                raise ConnectionError("closed")
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{small.ports['metrics']}/metrics", timeout=5).read().decode()
        self.assertRegex(metrics, r'rwg_provisioning_refused_connections_total\{reason="limit"\} [1-9]')
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_connections 2")
        # A phone that lets go makes room.
        held[0].close()
        rwgtest.wait_until("room again", lambda: subprocess.run(
            ["curl", "-sf", "--cacert", self.certs["ca"], "-o", "/dev/null",
             f"https://localhost:{port}{self.path('aastra.cfg')}"]).returncode == 0, timeout=5)

    def test_slow_header_is_cut_off_at_its_deadline(self):
        """A client dribbling its request header one byte a second is closed when the header
        deadline (3 s here) passes, however regularly it sends; a client that sends its request
        is served meanwhile, and a keep-alive connection may stay idle longer than that deadline
        between requests."""
        svc, port = self.another("slow", "--header-timeout-seconds", "3",
                                 "--idle-timeout-seconds", "30", "--threads", "1")
        slow = self.tls(port)
        keep = self.tls(port, source="127.0.0.2")
        self.assertEqual(self.get(keep, "aastra.cfg")[0], 200)
        request = f"GET {self.path('aastra.cfg')} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        started = time.monotonic()
        cut_after = None
        for i in range(len(request)):
            try:
                slow.sendall(request[i:i + 1])
            except (ssl.SSLError, ConnectionError, OSError):
                cut_after = time.monotonic() - started
                break
            if i == 1:  # served while the slow one dribbles
                status, _, _ = self.curl(self.path("6867i.cfg"), source="127.0.0.3")
                self.assertEqual(status, 200)
            time.sleep(1)
            if time.monotonic() - started > 8:
                break
        if cut_after is None and self.closed_by_server(slow):
            cut_after = time.monotonic() - started
        self.assertIsNotNone(cut_after, "the dribbling client is still connected")
        self.assertLess(cut_after, 8)
        self.assertRegex(self.metrics(svc), r'rwg_provisioning_timeouts_total\{phase="header"\} 1')
        # The keep-alive connection, idle for longer than the header deadline, still serves.
        self.assertEqual(self.get(keep, "6867i.cfg")[0], 200)
        # A connection that sends nothing at all is closed at the deadline too.
        silent = self.tls(port)
        started = time.monotonic()
        self.assertTrue(self.closed_by_server(silent))
        self.assertLess(time.monotonic() - started, 6)

    def test_one_source_cannot_hold_every_connection(self):
        """--max-connections-per-source (3 here): a 4th connection from the same address is
        closed at once, while another address is served; closing one makes room again."""
        svc, port = self.another("per-source", "--max-connections-per-source", "3",
                                 "--threads", "2")
        held = [self.tls(port) for _ in range(3)]
        for s in held:
            self.assertEqual(self.get(s, "aastra.cfg")[0], 200)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            extra = self.tls(port, timeout=5)
            if self.get(extra, "aastra.cfg")[0] == 0:
                raise ConnectionError("closed")
        other = self.tls(port, source="127.0.0.2")
        self.assertEqual(self.get(other, "aastra.cfg")[0], 200)
        metrics = self.metrics(svc)
        self.assertRegex(metrics,
                         r'rwg_provisioning_refused_connections_total\{reason="source_limit"\} 1')
        self.assertRegex(metrics, r"(?m)^rwg_provisioning_connections 4")
        held[0].close()
        rwgtest.wait_until("room again", lambda: subprocess.run(
            ["curl", "-sf", "--cacert", self.certs["ca"], "-o", "/dev/null",
             f"https://localhost:{port}{self.path('aastra.cfg')}"]).returncode == 0, timeout=5)

    def test_regenerated_hash_applies_without_restart(self):
        old = self.hash
        self.assertEqual(self.curl(self.path("aastra.cfg"))[0], 200)
        self.ctl.ok("hash", "regenerate", "--confirm", password=ADMIN_PASSWORD)
        new = self.ctl.json("hash", "show")["key"]
        self.assertNotEqual(new, old)
        rwgtest.wait_until("the new key serves", lambda: self.curl(
            self.path("aastra.cfg", new), source="127.0.0.3")[0] == 200, timeout=5)
        self.assertEqual(self.curl(self.path("aastra.cfg", old), source="127.0.0.3")[0], 404)
        self.assertIsNone(self.prov.proc.poll(), "no restart")


if __name__ == "__main__":
    unittest.main()
