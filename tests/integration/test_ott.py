"""Integration: OTT access (R-OTT, docs/ott.md) end to end with real programs: redis-server,
control (the admin token), ott configured through its gRPC API (rwg.ott.v1.OttService), a
stand-in User Portal / Web Client (tests/testing/ott_backend.py, HTTPS and plain HTTP), curl,
Python's ssl and headless Chromium as the remote worker's browser.

Run with Debian's python3 (/usr/bin/python3): the gRPC client is Debian's python3-grpcio and
python3-protobuf, its stubs generated from proto/ with protoc and grpc_python_plugin. Chromium
is Debian's `chromium`, the test CA trusted through an NSS database (libnss3-tools). The
browser's screenshots are kept in $RWG_ARTIFACT_DIR/ott (the temporary directory's
rwg-artifacts/ott without it)."""
import base64
import gzip
import hashlib
import html.parser
import http.client
import importlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import rwgtest

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "../testing/ott_backend.py")
PROTO_DIR = os.path.join(HERE, "../../proto")
ADMIN_PASSWORD = "it-admin-password-1"
ACCOUNT = "alice"
ACCOUNT_PASSWORD = "alice-ott-password-1"
COOKIE = "__Host-rwg-ott"
LOGIN_FAILURES = 3
BACKEND_TIMEOUT = 2
HEADER_TIMEOUT = 3
IDLE_TIMEOUT = 4
# Idle kept-alive connections to the applications ott may hold beyond those it held when the
# case began (connections to the applications are kept alive and reused, docs/ott.md).
POOL_SLACK = 8

PORTAL = "portal.rwg.test"      # user-portal, HTTPS application
ADMIN = "admin.rwg.test"        # web-admin, HTTPS application
CLIENT = "client.rwg.test"      # web-client, plain HTTP application
DISABLED = "disabled.rwg.test"  # in the list, disabled
NOCERT = "nocert.rwg.test"      # in the list, no certificate in --cert-dir
STRAY = "stray.rwg.test"        # a certificate in --cert-dir, not in the list
PATHS = {"user": ["/userportal/"], "admin": ["/admin/"],
         "common": ["/common/", "/favicon.ico"]}

_pb = None


def protos():
    """rwg.admin.v1 and rwg.ott.v1 messages and stubs, generated once per run into a temporary
    directory. Fails (never skips) when the gRPC client packages are missing."""
    global _pb
    if _pb:
        return _pb
    try:
        importlib.import_module("grpc")  # Debian's python3-grpcio
        importlib.import_module("google.protobuf")  # Debian's python3-protobuf
    except ImportError as e:
        raise AssertionError(
            f"the gRPC client is missing ({e}): install Debian's python3-grpcio and "
            "python3-protobuf (tools/rwg installs them) and run with /usr/bin/python3")
    out = tempfile.mkdtemp(prefix="rwg-ott-stubs-")
    plugin = shutil.which("grpc_python_plugin")
    if not plugin:
        raise AssertionError("grpc_python_plugin missing (Debian's protobuf-compiler-grpc)")
    subprocess.run(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", "rwg/admin/v1/admin.proto",
                    "rwg/ott/v1/ott.proto"], check=True, capture_output=True)
    sys.path.insert(0, out)
    import grpc
    from rwg.admin.v1 import admin_pb2, admin_pb2_grpc
    from rwg.ott.v1 import ott_pb2, ott_pb2_grpc
    _pb = type("Protos", (), dict(grpc=grpc, admin=admin_pb2, admin_grpc=admin_pb2_grpc,
                                  ott=ott_pb2, ott_grpc=ott_pb2_grpc, dir=out))
    return _pb


def tearDownModule():
    if _pb:
        shutil.rmtree(_pb.dir, ignore_errors=True)


def make_leaf(tmp, fqdn, out_dir):
    """A certificate for `fqdn` signed by the test CA in `tmp`, as <out_dir>/<fqdn>/tls.crt +
    tls.key (a kubernetes.io/tls Secret's layout)."""
    d = os.path.join(out_dir, fqdn)
    os.makedirs(d)
    def run(*args):
        subprocess.run(args, check=True, cwd=d, capture_output=True)
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={fqdn}", "-keyout", "tls.key", "-out", "tls.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{fqdn}\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", os.path.join(tmp, "ca.pem"),
        "-CAkey", os.path.join(tmp, "ca.key"), "-CAcreateserial", "-days", "2", "-extfile",
        "ext", "-out", "tls.crt")
    for f in ("tls.csr", "ext"):
        os.remove(os.path.join(d, f))
    return d


class Backend:
    """tests/testing/ott_backend.py: HTTPS with `certs`, plain HTTP without."""

    def __init__(self, certs=None, port=0):
        self.certs, self.port, self.proc = certs, port, None

    def start(self):
        args = [sys.executable, BACKEND, "--port", str(self.port)]
        if self.certs:
            args += ["--cert", self.certs["cert"], "--key", self.certs["key"]]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise AssertionError(f"the stand-in application did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self.proc.stdin.close()
            self.proc.stdout.close()
        self.proc = None


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        """The values of a header (all of them, in order)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def seen_headers(self):
        """The stand-in's JSON: the request headers it got, as [(name, value)]."""
        return [tuple(h) for h in self.json()["headers"]]

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


def answer_complete(got):
    """Whether `got` holds a whole HTTP answer (its header and body)."""
    end = got.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(got[:end]).lower()
    body = got[end + 4:]
    if head.startswith(b"http/1.1 1") and not head.startswith(b"http/1.1 101"):
        return answer_complete(body)
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if m:
        return len(body) >= int(m.group(1))
    if re.search(rb"\r\ntransfer-encoding:[^\r]*chunked", head):
        return body.endswith(b"0\r\n\r\n")
    return head.startswith(b"http/1.1 304") or head.startswith(b"http/1.1 204")


class _Bytes:
    def __init__(self, data):
        self.data = data

    def makefile(self, *args, **kwargs):
        import io
        return io.BytesIO(self.data)


def parse_answer(got, method="GET"):
    if not got:
        return None
    r = http.client.HTTPResponse(_Bytes(got), method=method)
    try:
        r.begin()
    except http.client.HTTPException as e:
        raise AssertionError(f"not an HTTP answer ({e!r}): {got[:300]!r}")
    try:
        body = r.read()
    except http.client.IncompleteRead as e:
        body = e.partial
    return Response(r.status, r.getheaders(), body)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to ott on 127.0.0.1 with `host` as SNI (and as Host unless the request sets
    one)."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class FormParser(html.parser.HTMLParser):
    """The first form of a page: its action, method and inputs [(name, type, value)]."""

    def __init__(self):
        super().__init__()
        self.action = self.method = None
        self.inputs = []
        self._in = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self._done and not self._in:
            self._in = True
            self.action, self.method = a.get("action", ""), (a.get("method") or "get").lower()
        elif tag == "input" and self._in and a.get("name"):
            self.inputs.append((a["name"], (a.get("type") or "text").lower(), a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form" and self._in:
            self._in, self._done = False, True


def ws_handshake_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_frame(opcode, payload):
    """A client frame (masked)."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def ws_read(f):
    """A server frame: (opcode, payload), None at the end of the connection."""
    head = f.read(2)
    if len(head) < 2:
        return None
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if head[1] & 0x80:
        raise AssertionError("a server frame arrived masked")
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    data = f.read(n)
    if len(data) < n:
        return None
    return opcode, data


class OttFixture(rwgtest.TempDirTest):

    def setUp(self):
        super().setUp()
        self.pb = protos()
        self.certs = rwgtest.make_certs(self.tmp)
        rwgtest.start_control(self, ADMIN_PASSWORD)
        self.cert_dir = os.path.join(self.tmp, "ott-certs")
        os.mkdir(self.cert_dir)
        for fqdn in (PORTAL, ADMIN, CLIENT, DISABLED, STRAY):
            make_leaf(self.tmp, fqdn, self.cert_dir)
        self.app = Backend(self.certs).start()
        self.addCleanup(lambda: self.app.stop())
        self.plain_app = Backend().start()
        self.addCleanup(lambda: self.plain_app.stop())
        grpc = self.pb.grpc
        with open(self.certs["ca"], "rb") as f:
            creds = grpc.ssl_channel_credentials(f.read())
        channel = grpc.secure_channel(self.control.grpc_address, creds)
        self.addCleanup(channel.close)
        token = self.pb.admin_grpc.AdminServiceStub(channel).Login(
            self.pb.admin.LoginRequest(username="admin", password=ADMIN_PASSWORD),
            timeout=10).token
        self.assertTrue(token)
        self.md = [("authorization", f"Bearer {token}")]
        self.port = rwgtest.free_port()
        self.start_ott()
        self.ott_channel = grpc.secure_channel(self.ott.grpc_address, creds)
        self.addCleanup(self.ott_channel.close)
        self.api = self.pb.ott_grpc.OttServiceStub(self.ott_channel)
        self.add_domain(PORTAL, self.pb.ott.SERVICE_USER_PORTAL)
        self.add_domain(ADMIN, self.pb.ott.SERVICE_WEB_ADMIN)
        self.add_domain(CLIENT, self.pb.ott.SERVICE_WEB_CLIENT, plain=True)
        self.add_domain(DISABLED, self.pb.ott.SERVICE_USER_PORTAL, enabled=False)
        self.add_domain(NOCERT, self.pb.ott.SERVICE_USER_PORTAL)
        self.rpc("AddAccount", self.pb.ott.AddAccountRequest(account=self.pb.ott.Account(
            name=ACCOUNT, password=ACCOUNT_PASSWORD, enabled=True)))
        # Changes reach ott within a second.
        for fqdn in (PORTAL, ADMIN, CLIENT):
            rwgtest.wait_until(f"{fqdn} served", lambda: self.status(fqdn) == 200, timeout=15)
        self.settled()
        self.baseline_fds = self.fds()

    def start_ott(self, extra=()):
        """ott with the fixture's flags; `extra` (flag, value, ...) replaces or adds some."""
        flags = {
            "--redis-address": f"127.0.0.1:{self.redis.port}",
            "--tls-cert-file": self.certs["cert"], "--tls-key-file": self.certs["key"],
            "--listen": f"127.0.0.1:{self.port}", "--cert-dir": self.cert_dir,
            "--login-failures": str(LOGIN_FAILURES), "--lockout-minutes": "1",
            "--backend-timeout-seconds": str(BACKEND_TIMEOUT),
            "--header-timeout-seconds": str(HEADER_TIMEOUT),
            "--idle-timeout-seconds": str(IDLE_TIMEOUT),
            # Every case makes refusals and many requests from 127.0.0.1 on purpose: only the
            # cases on limits lower these.
            "--ban-refusals": "100000", "--requests-per-source": "100000"}
        extra = list(extra)
        flags.update(zip(extra[::2], extra[1::2]))
        self.ott = rwgtest.Service("ott", self.tmp, [x for kv in flags.items() for x in kv])
        self.ott.start()
        self.addCleanup(self.stop_ott)

    def stop_ott(self):
        if self.ott.alive():
            self.assertEqual(self.ott.stop(), 0, "ott must exit 0 on SIGTERM")

    # -- configuration through the API
    def rpc(self, method, request):
        return getattr(self.api, method)(request, metadata=self.md, timeout=10)

    def backend(self, plain=False, port=None):
        ott = self.pb.ott
        if plain:
            return ott.Backend(host="127.0.0.1", port=port or self.plain_app.port, tls=False)
        return ott.Backend(host="127.0.0.1", port=port or self.app.port, tls=True,
                           ca_file=self.certs["ca"], server_name="localhost")

    def add_domain(self, fqdn, service, plain=False, enabled=True, port=None, paths=PATHS):
        ott = self.pb.ott
        return self.rpc("AddDomain", ott.AddDomainRequest(domain=ott.Domain(
            fqdn=fqdn, service=service, backend=self.backend(plain, port), enabled=enabled,
            paths=ott.PathLists(**paths))))

    def update_domain(self, fqdn, mask, **fields):
        ott = self.pb.ott
        return self.rpc("UpdateDomain", ott.UpdateDomainRequest(
            domain=ott.Domain(fqdn=fqdn, **fields), update_mask=mask))

    def account(self, name=ACCOUNT):
        for a in self.rpc("ListAccounts", self.pb.ott.ListAccountsRequest()).accounts:
            if a.name == name:
                return a
        return None

    # -- clients
    def context(self, ca=True):
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        if not ca:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def request(self, fqdn, method="GET", path="/userportal/headers", body=None, headers=None,
                timeout=30):
        conn = _Connection(fqdn, self.port, context=self.context(), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def status(self, fqdn, path="/userportal/headers"):
        try:
            return self.request(fqdn, path=path, timeout=5).status
        except (OSError, http.client.HTTPException):
            return None

    def tls(self, sni, timeout=10):
        """A TLS connection to ott with `sni` (None: no SNI), the certificate checked against
        the test CA when there is an SNI."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            if sni is None:
                return self.context(ca=False).wrap_socket(raw)
            return self.context().wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise

    def tls_refusal(self, sni):
        """Why a TLS connection with `sni` failed; fails when it did not."""
        try:
            self.tls(sni).close()
        except OSError as e:
            return str(e)
        self.fail(f"TLS with SNI {sni} was accepted")

    def raw(self, data, sni=PORTAL, timeout=15):
        """Bytes as they are over TLS; the answer parsed (None when ott closed the connection
        without one). Sends and reads at once: an answer to a request too long to take comes
        before the request's end, and is read before ott's close can reset the connection."""
        got = bytearray()
        with self.tls(sni, timeout) as s:
            s.setblocking(False)
            left = memoryview(data)
            deadline = time.monotonic() + timeout
            while not answer_complete(got) and time.monotonic() < deadline:
                readable, writable, _ = select.select([s], [s] if left else [], [], 0.2)
                if readable or s.pending():
                    try:
                        piece = s.recv(65536)
                        if not piece:
                            break
                        got += piece
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
                    except OSError:
                        break
                if writable and left:
                    try:
                        left = left[s.send(left[:16384]):]
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
                    except OSError:
                        left = memoryview(b"")  # ott stopped reading; its answer may follow
        return parse_answer(bytes(got), data.split(b" ", 1)[0].decode("latin-1"))

    def curl(self, *args, fqdn=PORTAL):
        return subprocess.run(
            ["curl", "-sS", "--resolve", f"{fqdn}:{self.port}:127.0.0.1", "--cacert",
             self.certs["ca"], *args], capture_output=True, timeout=120)

    def url(self, fqdn, path):
        return f"https://{fqdn}:{self.port}{path}"

    # -- the login
    def login(self, name=ACCOUNT, password=ACCOUNT_PASSWORD, next_path="/admin/page",
              fqdn=ADMIN):
        """Fills rwg's login form as a browser does: the page from the redirect, its form's
        fields (hidden ones kept). Returns the answer to the form's POST."""
        first = self.request(fqdn, path=next_path)
        self.assertEqual(first.status, 303, first)
        location = first.header("Location")[0]
        login_url = urllib.parse.urljoin(self.url(fqdn, next_path), location)
        page = self.request(fqdn, path=urllib.parse.urlsplit(login_url).path + "?" +
                            urllib.parse.urlsplit(login_url).query)
        self.assertEqual(page.status, 200, page)
        return self.submit_login(fqdn, login_url, page.body, name, password)

    def submit_login(self, fqdn, login_url, page_html, name, password, next_override=None):
        form = FormParser()
        form.feed(page_html.decode("utf-8", "replace"))
        self.assertEqual(form.method, "post", "rwg's login page has a POST form")
        fields = []
        for field, kind, value in form.inputs:
            if kind == "password":
                fields.append((field, password))
            elif kind in ("text", "email") or (kind not in ("hidden", "submit") and not value):
                fields.append((field, name))
            elif field == "next" and next_override is not None:
                fields.append((field, next_override))
            elif kind != "submit":
                fields.append((field, value))
        self.assertTrue(any(k == "password" for _, k, _ in form.inputs), form.inputs)
        action = urllib.parse.urlsplit(urllib.parse.urljoin(login_url, form.action or ""))
        self.assertEqual(action.hostname, fqdn, "the login form posts to the same FQDN")
        target = action.path + ("?" + action.query if action.query else "")
        return self.request(fqdn, "POST", target, body=urllib.parse.urlencode(fields),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def session_cookie(self, response):
        """The value of rwg's cookie in a login answer, and its attributes (lower case)."""
        for v in response.header("Set-Cookie"):
            name, _, rest = v.partition("=")
            if name.strip() == COOKIE:
                value, *attrs = [p.strip() for p in rest.split(";")]
                return value, [a.lower() for a in attrs]
        return None, None

    def session_keys(self):
        return self.redis.cli("KEYS", "rwg:ott:session:*")

    # -- what is left behind
    def metric(self, name, labels=None):
        with urllib.request.urlopen(self.ott.metrics_url, timeout=10) as r:
            text = r.read().decode()
        total = None
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            if labels and not all(f'{k}="{v}"' in (m.group(2) or "") for k, v in labels.items()):
                continue
            total = (total or 0) + float(m.group(3))
        return total

    def fds(self):
        return len(os.listdir(f"/proc/{self.ott.proc.pid}/fd"))

    def settled(self, check_fds=False):
        """No connection left open in ott; with check_fds, no more descriptors than when the
        case began, beside idle connections to the applications."""
        self.assertIsNotNone(self.metric("rwg_ott_connections_open"),
                             "ott exports rwg_ott_connections_open")
        rwgtest.wait_until("rwg_ott_connections_open back to 0",
                           lambda: self.metric("rwg_ott_connections_open") == 0, timeout=15)
        if check_fds:
            try:
                rwgtest.wait_until("ott's descriptors back to where they were",
                                   lambda: self.fds() <= self.baseline_fds + POOL_SLACK,
                                   timeout=15)
            except AssertionError:
                raise AssertionError(f"ott holds {self.fds()} descriptors, "
                                     f"{self.baseline_fds} when the case began")
        self.assertTrue(self.ott.alive(), "ott is running")

    def still_serving(self):
        r = self.request(PORTAL, path="/userportal/page")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"MiVoice 5000 User Portal (stand-in)", r.body)


class ProxyTest(OttFixture):
    def test_portal_page_and_form_through_rwg_with_curl(self):
        r = self.curl("-D", "-", self.url(PORTAL, "/userportal/page"))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertRegex(out, r"^HTTP/1\.1 200")
        self.assertIn("MiVoice 5000 User Portal (stand-in)", out)
        self.assertIn('<form id="settings" method="post" action="form">', out)
        # The form as the page posts it.
        r = self.curl("--data-urlencode", "forward=3001", "--data-urlencode", "note=héllo & co",
                      self.url(PORTAL, "/userportal/form"))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["fields"], {"forward": ["3001"], "note": ["héllo & co"]})
        self.assertEqual(got["request"]["method"], "POST")
        self.assertEqual(got["request"]["target"], "/userportal/form")
        # The certificate is the one of the FQDN the browser asked for (SNI), for each FQDN.
        for fqdn in (PORTAL, ADMIN, CLIENT):
            with self.tls(fqdn) as s:
                names = [v for k, v in s.getpeercert()["subjectAltName"] if k == "DNS"]
                self.assertEqual(names, [fqdn])
        # The plain HTTP application behind client.rwg.test.
        r = self.request(CLIENT, path="/userportal/headers")
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json()["tls"])
        self.assertTrue(self.request(PORTAL, path="/userportal/headers").json()["tls"])
        # Connections to the application are kept alive and reused: requests one after the
        # other, each from a new connection of the browser, share connections to it.
        seen = [self.request(PORTAL, path="/userportal/headers").json() for _ in range(6)]
        self.assertLess(len({s["connection"] for s in seen}), 6, seen)
        self.assertGreater(max(s["requests_on_connection"] for s in seen), 1)
        # Answers' own headers reach the browser: the application's cookie.
        r = self.request(PORTAL, path="/userportal/setcookie")
        self.assertEqual(r.header("Set-Cookie"), ["app-session=abc123; Path=/"])
        self.settled(check_fds=True)

    def test_headers_the_application_sees(self):
        request = (
            b"GET /userportal/headers?a=1&b=%20x HTTP/1.1\r\n"
            b"Host: portal.rwg.test\r\n"
            b"User-Agent: remote-worker/1\r\n"
            b"X-Forwarded-For: 203.0.113.66\r\n"
            b"X-Forwarded-For: 198.51.100.7, 10.0.0.1\r\n"
            b"X-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: evil.example\r\n"
            b"Forwarded: for=203.0.113.66;proto=http;host=evil.example\r\n"
            b"Cookie: app=1; " + COOKIE.encode() + b"=forged; theme=dark\r\n"
            b"X-Custom: kept as it is\r\n"
            b"Connection: keep-alive, X-Hop\r\n"
            b"X-Hop: hop-by-hop by Connection\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"TE: gzip\r\n"
            b"Upgrade: h2c\r\n"
            b"\r\n")
        r = self.raw(request)
        self.assertIsNotNone(r, "ott answered")
        self.assertEqual(r.status, 200, r)
        seen = r.json()
        self.assertEqual(seen["target"], "/userportal/headers?a=1&b=%20x")
        headers = seen["headers"]
        def values(name):
            return [v for k, v in headers if k.lower() == name.lower()]
        # rwg's forwarding headers, the client's own replaced.
        self.assertEqual(values("X-Forwarded-For"), ["127.0.0.1"], headers)
        self.assertEqual(values("X-Forwarded-Proto"), ["https"], headers)
        self.assertEqual(values("X-Forwarded-Host"), [PORTAL], headers)
        self.assertEqual(values("Forwarded"), [f"for=127.0.0.1;proto=https;host={PORTAL}"],
                         headers)
        # rwg's cookie removed, the application's kept.
        cookies = "; ".join(values("Cookie"))
        self.assertNotIn(COOKIE, cookies)
        self.assertIn("app=1", cookies)
        self.assertIn("theme=dark", cookies)
        # Hop-by-hop headers removed; the others as they were.
        for hop in ("X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE",
                    "Upgrade"):
            self.assertEqual(values(hop), [], f"{hop} reached the application: {headers}")
        self.assertNotIn("x-hop", " ".join(values("Connection")).lower())
        self.assertEqual(values("X-Custom"), ["kept as it is"])
        self.assertEqual(values("User-Agent"), ["remote-worker/1"])
        self.assertEqual(values("Host"), [PORTAL])
        self.settled(check_fds=True)

    def test_paths_off_the_lists_get_404_and_are_counted(self):
        before = self.metric("rwg_ott_refused_total", {"reason": "path"}) or 0
        count = {c: self.metric("rwg_ott_requests_total", {"domain": PORTAL, "code": c}) or 0
                 for c in ("2xx", "4xx")}
        timed = self.metric("rwg_ott_request_duration_seconds_count") or 0
        refused = ["/", "/other/headers", "/userportalx/headers", "/favicon.ico/more",
                   "/favicon.icox", "/commonx/headers"]
        for path in refused:
            r = self.request(PORTAL, path=path)
            self.assertEqual(r.status, 404, f"{path}: {r}")
            self.assertNotIn(b'"target"', r.body, f"{path} reached the application: {r}")
        self.assertEqual(self.metric("rwg_ott_refused_total", {"reason": "path"}),
                         before + len(refused))
        # Prefixes and the exact path go through, user and common alike, without a login.
        passed = ("/userportal/headers", "/userportal/deeper/still/headers", "/common/headers",
                  "/favicon.ico")
        for path in passed:
            r = self.request(PORTAL, path=path)
            self.assertEqual(r.status, 200, f"{path}: {r}")
            self.assertEqual(urllib.parse.urlsplit(r.json()["target"]).path, path)
        # Each request counted once, by domain and class of answer, and timed (once its answer
        # is written: the last may be counted just after the client has it).
        def counted():
            return (self.metric("rwg_ott_requests_total", {"domain": PORTAL, "code": "4xx"}),
                    self.metric("rwg_ott_requests_total", {"domain": PORTAL, "code": "2xx"}),
                    self.metric("rwg_ott_request_duration_seconds_count"))
        expected = (count["4xx"] + len(refused), count["2xx"] + len(passed),
                    timed + len(refused) + len(passed))
        try:
            rwgtest.wait_until("the requests counted", lambda: counted() == expected, timeout=5)
        except AssertionError:
            self.fail(f"counted (4xx, 2xx, timed) {counted()}, expected {expected}")
        time.sleep(0.3)
        self.assertEqual(counted(), expected)  # and not more
        # A domain's own lists replace the service's defaults: with only /other/ as user
        # path, /userportal/ is refused.
        self.update_domain(PORTAL, ["paths"],
                           paths=self.pb.ott.PathLists(user=["/other/"]))
        rwgtest.wait_until("the new lists in use", lambda: self.status(PORTAL) == 404)
        self.assertEqual(self.status(PORTAL, "/other/headers"), 200)
        self.settled(check_fds=True)

    def test_paths_are_normalized_first_and_odd_ones_refused(self):
        # `//` collapsed: still a user path, and an admin path stays an admin path.
        self.assertEqual(self.status(PORTAL, "//userportal//headers"), 200)
        r = self.request(PORTAL, path="//admin//headers")
        self.assertEqual(r.status, 303, r)
        r = self.request(PORTAL, path="/userportal//admin/headers")
        self.assertIn(r.status, (200, 404), r)  # a user path; never a way round the login
        for path in ("/userportal/../admin/headers", "/userportal/./headers",
                     "/userportal/%2e%2e/admin/headers", "/userportal/%2E%2E/admin/headers",
                     "/userportal/a%2fb", "/userportal/a%2Fb", "/userportal/%2e/headers",
                     "/userportal/a%25b", "/userportal/a%00b", "/userportal/..",
                     "/userportal/%2e%2e%2fadmin%2fheaders"):
            r = self.request(PORTAL, path=path)
            self.assertEqual(r.status, 400, f"{path}: {r}")
        self.still_serving()
        self.settled(check_fds=True)

    def test_unknown_missing_or_disabled_sni_gets_a_tls_alert(self):
        for sni in (None, STRAY, NOCERT, DISABLED, "unknown.rwg.test"):
            self.assertIn("UNRECOGNIZED_NAME", self.tls_refusal(sni).upper(), f"SNI {sni}")
        # ListDomains tells which FQDN has a certificate.
        domains = {d.fqdn: d for d in
                   self.rpc("ListDomains", self.pb.ott.ListDomainsRequest()).domains}
        self.assertEqual(set(domains), {PORTAL, ADMIN, CLIENT, DISABLED, NOCERT})
        self.assertTrue(domains[PORTAL].has_certificate)
        self.assertFalse(domains[NOCERT].has_certificate)
        self.assertFalse(domains[DISABLED].enabled)
        # A certificate put in --cert-dir later is served within the reload period.
        make_leaf(self.tmp, NOCERT, os.path.join(self.tmp, "later"))
        shutil.copytree(os.path.join(self.tmp, "later", NOCERT),
                        os.path.join(self.cert_dir, NOCERT), dirs_exist_ok=True)
        rwgtest.wait_until("the new certificate served",
                           lambda: self.status(NOCERT) == 200, timeout=30)
        self.still_serving()
        self.settled(check_fds=True)

    def test_host_other_than_sni_gets_421(self):
        for host in (ADMIN, "unknown.example", "127.0.0.1", f"{ADMIN}:{self.port}"):
            r = self.request(PORTAL, path="/userportal/headers", headers={"Host": host})
            self.assertEqual(r.status, 421, f"Host {host}: {r}")
        # The FQDN with the port (as a browser sends on a port other than 443) is the FQDN.
        r = self.request(PORTAL, path="/userportal/headers",
                         headers={"Host": f"{PORTAL}:{self.port}"})
        self.assertEqual(r.status, 200, r)
        # An absolute target naming another FQDN never reaches that FQDN's application.
        r = self.raw(b"GET https://admin.rwg.test/admin/headers HTTP/1.1\r\n"
                     b"Host: portal.rwg.test\r\nConnection: close\r\n\r\n")
        self.assertIsNotNone(r)
        self.assertIn(r.status, (400, 421), r)
        # No Host at all.
        r = self.raw(b"GET /userportal/headers HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertIsNotNone(r)
        self.assertIn(r.status, (400, 421), r)
        self.settled(check_fds=True)

    def test_disabled_or_deleted_domain_is_refused(self):
        self.update_domain(PORTAL, ["enabled"], enabled=False)
        rwgtest.wait_until("disabled", lambda: self.status(PORTAL) is None)
        self.assertIn("UNRECOGNIZED_NAME", self.tls_refusal(PORTAL).upper())
        self.update_domain(PORTAL, ["enabled"], enabled=True)
        rwgtest.wait_until("enabled again", lambda: self.status(PORTAL) == 200)
        self.rpc("DeleteDomain", self.pb.ott.DeleteDomainRequest(fqdn=PORTAL))
        rwgtest.wait_until("deleted", lambda: self.status(PORTAL) is None)
        self.assertIn("UNRECOGNIZED_NAME", self.tls_refusal(PORTAL).upper())
        self.assertEqual(self.status(ADMIN, "/userportal/headers"), 200)
        self.settled(check_fds=True)

    def test_websocket_echo_through_rwg(self):
        for fqdn in (CLIENT, PORTAL):  # plain HTTP and HTTPS applications
            key = ws_handshake_key()
            with self.tls(fqdn) as s:
                s.sendall((f"GET /userportal/ws HTTP/1.1\r\nHost: {fqdn}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Origin: https://{fqdn}\r\n\r\n").encode())
                f = s.makefile("rb")
                status = f.readline()
                self.assertRegex(status, rb"^HTTP/1\.1 101 ", status)
                head = {}
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    k, _, v = line.decode().partition(":")
                    head[k.strip().lower()] = v.strip()
                expected = base64.b64encode(hashlib.sha1(
                    key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85").digest()).decode()
                self.assertEqual(head.get("sec-websocket-accept"), expected)
                self.assertEqual(head.get("upgrade", "").lower(), "websocket")
                s.sendall(ws_frame(0x1, "bonjour, poste 2001".encode()))
                self.assertEqual(ws_read(f), (0x1, "bonjour, poste 2001".encode()))
                big = os.urandom(300000)
                s.sendall(ws_frame(0x2, big))
                self.assertEqual(ws_read(f), (0x2, big))
                s.sendall(ws_frame(0x9, b"ping"))
                self.assertEqual(ws_read(f), (0xA, b"ping"))
                s.sendall(ws_frame(0x8, struct.pack(">H", 1000)))
                self.assertEqual(ws_read(f), (0x8, struct.pack(">H", 1000)))
                f.close()
        # A WebSocket the client drops without a close frame.
        with self.tls(CLIENT) as s:
            s.sendall((f"GET /userportal/ws HTTP/1.1\r\nHost: {CLIENT}\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {ws_handshake_key()}\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 101"))
        self.settled(check_fds=True)

    def test_a_websocket_client_that_reads_nothing_is_closed(self):
        """A browser that keeps a WebSocket but stops reading it: what rwg has for it cannot
        be written. After the idle timeout (not the WebSocket's hour) rwg closes both sides,
        though the client's own frames kept coming until its socket was full."""
        with self.tls(CLIENT, timeout=2) as s:
            s.sendall((f"GET /userportal/ws HTTP/1.1\r\nHost: {CLIENT}\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {ws_handshake_key()}\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 101"))
            # Binary frames of 1 MiB (masked with a zero key), echoed by the application and
            # never read here, until the sockets on the way are full.
            payload = os.urandom(1 << 20)
            frame = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", len(payload)) + bytes(4) + \
                payload
            sent = 0
            try:
                while sent < (256 << 20):
                    s.sendall(frame)
                    sent += len(frame)
            except (socket.timeout, TimeoutError):
                pass
            self.assertLess(sent, 256 << 20, "the sockets on the way never filled")
            # rwg's write to this client has waited since before the send above blocked.
            time.sleep(IDLE_TIMEOUT + 2)
            # Reading now drains what was held, then meets the end rwg made.
            s.settimeout(10)
            closed = False
            until = time.monotonic() + 30
            try:
                while time.monotonic() < until:
                    if not s.recv(1 << 20):
                        closed = True
                        break
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                closed = True
            except (socket.timeout, TimeoutError):
                pass
            self.assertTrue(closed, "rwg kept the WebSocket of a client that read nothing")
        self.still_serving()
        self.settled(check_fds=True)

    def test_large_download_arrives_whole(self):
        out = os.path.join(self.tmp, "big.bin")
        r = self.curl("-D", "-", "-o", out, self.url(PORTAL, "/userportal/big"))
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(rb"(?im)^x-content-sha256:\s*([0-9a-f]{64})", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(os.path.getsize(out), 64 << 20)
        h = hashlib.sha256()
        with open(out, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.assertEqual(h.hexdigest(), m.group(1).decode())
        os.remove(out)
        # A download the browser abandons half way leaves nothing open.
        with self.tls(PORTAL) as s:
            s.sendall(b"GET /userportal/big HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
            got = 0
            while got < (4 << 20):
                got += len(s.recv(65536))
        self.still_serving()
        self.settled(check_fds=True)

    def test_a_download_the_application_breaks_off_ends_the_client_connection(self):
        """The answer's header and part of its body have gone to the client when the application
        closes its connection, or stops sending for longer than the timeout: the client's
        connection is closed short of the promised length (never a hang, never another
        answer's bytes), the break is counted, and ott goes on."""
        size = 4 << 20
        for case, query, reason in (
                ("closed", f"size={size}&after={1 << 20}", "protocol"),
                ("stalled", f"size={size}&after={1 << 20}&stall={BACKEND_TIMEOUT + 2}",
                 "timeout")):
            with self.subTest(case):
                before = self.metric("rwg_ott_backend_errors_total",
                                     {"domain": PORTAL, "reason": reason}) or 0
                start = time.monotonic()
                with self.tls(PORTAL, timeout=BACKEND_TIMEOUT + 10) as s:
                    s.sendall(f"GET /userportal/cut?{query} HTTP/1.1\r\n"
                              "Host: portal.rwg.test\r\n\r\n".encode())
                    data = b""
                    while True:
                        try:
                            piece = s.recv(65536)
                        except (ssl.SSLError, ConnectionResetError):
                            break
                        if not piece:
                            break
                        data += piece
                took = time.monotonic() - start
                head, _, body = data.partition(b"\r\n\r\n")
                self.assertIn(f"content-length: {size}".encode(), head.lower())
                # All the application sent, and nothing more, then the close.
                self.assertEqual(len(body), 1 << 20)
                # The stand-in's first block of data (tests/testing/ott_backend.py, block(0)).
                pattern = hashlib.sha256(b"rwg ott stand-in").digest() * ((1 << 20) // 32)
                self.assertEqual(body, struct.pack(">Q", 0) + pattern[8:])
                if case == "stalled":
                    self.assertGreaterEqual(took, BACKEND_TIMEOUT - 0.2)
                    self.assertLess(took, BACKEND_TIMEOUT + 2)
                rwgtest.wait_until(
                    f"the break ({reason}) counted",
                    lambda: (self.metric("rwg_ott_backend_errors_total",
                                         {"domain": PORTAL, "reason": reason}) or 0) > before,
                    timeout=10)
        self.still_serving()
        self.settled(check_fds=True)

    def test_a_streamed_answer_reaches_the_client_as_it_comes(self):
        """The application sends its answer in two pieces, 1.5 s apart, chunked or (as HTTP/1.0
        does) until its close: the client has the first piece before the second is sent, and
        then the whole answer, chunked (it speaks HTTP/1.1) on a connection kept alive."""
        for framing in ("chunked", "close"):
            with self.subTest(framing=framing), self.tls(PORTAL, 15) as s:
                s.sendall(b"GET /userportal/trickle?framing=%s&pause=1.5 HTTP/1.1\r\n"
                          b"Host: portal.rwg.test\r\n\r\n" % framing.encode())
                start = time.monotonic()
                got = bytearray()
                while b"piece-1" not in got:
                    piece = s.recv(65536)
                    self.assertTrue(piece, bytes(got))
                    got += piece
                self.assertLess(time.monotonic() - start, 1.2, bytes(got))
                self.assertNotIn(b"piece-2", got)
                while not answer_complete(got):
                    piece = s.recv(65536)
                    self.assertTrue(piece, bytes(got))
                    got += piece
                r = parse_answer(bytes(got))
                self.assertEqual((r.status, r.body), (200, b"piece-1\npiece-2\n"), r)
                self.assertEqual(r.header("Transfer-Encoding"), ["chunked"], r)
                self.assertEqual(r.header("Connection"), [], r)
                # The same connection takes the next request.
                s.sendall(b"GET /userportal/page HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
                got = bytearray()
                while not answer_complete(got):
                    piece = s.recv(65536)
                    self.assertTrue(piece, bytes(got))
                    got += piece
                self.assertEqual(parse_answer(bytes(got)).status, 200)
        # The application's connection that ended an answer with its close is not used again:
        # a request with a body (which cannot be sent twice) gets its answer.
        r = self.raw(b"GET /userportal/trickle?framing=close&pause=0 HTTP/1.1\r\n"
                     b"Host: portal.rwg.test\r\nConnection: close\r\n\r\n")
        self.assertEqual((r.status, r.body), (200, b"piece-1\npiece-2\n"), r)
        r = self.raw(b"POST /userportal/upload HTTP/1.1\r\nHost: portal.rwg.test\r\n"
                     b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["length"], 5, r)
        # Two Transfer-Encoding lines (gzip, then chunked) reach the client as one, the body
        # chunked once.
        r = self.raw(b"GET /userportal/codings HTTP/1.1\r\nHost: portal.rwg.test\r\n"
                     b"Connection: close\r\n\r\n")
        self.assertEqual(r.header("Transfer-Encoding"), ["gzip, chunked"], r)
        size, _, rest = r.body.partition(b"\r\n")
        self.assertEqual(rest[int(size, 16):], b"\r\n0\r\n\r\n", r)
        self.assertEqual(gzip.decompress(rest[:int(size, 16)]), b"hello through two codings")
        # An HTTP/1.0 client knows no chunks: it gets the bytes, then the close.
        for framing in ("chunked", "close"):
            r = self.raw(b"GET /userportal/trickle?framing=%s&pause=0.2 HTTP/1.0\r\n"
                         b"Host: portal.rwg.test\r\n\r\n" % framing.encode())
            self.assertIsNotNone(r, framing)
            self.assertEqual((r.status, r.body), (200, b"piece-1\npiece-2\n"), (framing, r))
            self.assertEqual(r.header("Transfer-Encoding"), [], (framing, r))
        self.settled(check_fds=True)

    def test_chunked_and_sized_uploads_stream_through(self):
        data = os.urandom(3 << 20)
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(data)
        digest = hashlib.sha256(data).hexdigest()
        # Chunked (curl from stdin), as a browser sends it: no "Expect: 100-continue".
        with open(path, "rb") as f:
            r = subprocess.run(
                ["curl", "-sS", "--resolve", f"{PORTAL}:{self.port}:127.0.0.1", "--cacert",
                 self.certs["ca"], "-X", "POST", "-H", "Transfer-Encoding: chunked", "-H",
                 "Expect:", "-T", "-", self.url(PORTAL, "/userportal/upload")], stdin=f,
                capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual((got["length"], got["sha256"]), (len(data), digest))
        # With a Content-Length.
        r = self.curl("-X", "POST", "-H", "Expect:", "--data-binary", f"@{path}",
                      self.url(PORTAL, "/userportal/upload"))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual((got["length"], got["sha256"], got["chunked"]),
                         (len(data), digest, False))
        # Streamed both ways: the application echoes each piece as it reads it.
        r = self.curl("-X", "POST", "-H", "Expect:", "-H", "Transfer-Encoding: chunked",
                      "--data-binary",
                      f"@{path}", "-o", os.path.join(self.tmp, "echo.bin"),
                      self.url(PORTAL, "/userportal/echo"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(rwgtest.read_bytes(os.path.join(self.tmp, "echo.bin")), data)
        # With "Expect: 100-continue" (curl's way for large or unsized bodies): the application
        # answers 100 Continue, then its answer; both reach the client.
        with open(path, "rb") as f:
            r = subprocess.run(
                ["curl", "-sS", "--resolve", f"{PORTAL}:{self.port}:127.0.0.1", "--cacert",
                 self.certs["ca"], "-X", "POST", "-H", "Transfer-Encoding: chunked", "-H",
                 "Expect: 100-continue", "-T", "-", self.url(PORTAL, "/userportal/upload")],
                stdin=f, capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual((got["length"], got["sha256"]), (len(data), digest))
        # Hand-made chunks with an extension and a trailer.
        body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        r = self.raw(b"POST /userportal/upload HTTP/1.1\r\nHost: portal.rwg.test\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["sha256"], hashlib.sha256(b"hello world").hexdigest())
        self.settled(check_fds=True)

    def test_application_down_gets_502_at_once(self):
        nobody = rwgtest.free_port()
        self.update_domain(CLIENT, ["backend"], backend=self.backend(plain=True, port=nobody))
        rwgtest.wait_until("the new backend in use", lambda: self.status(CLIENT) == 502)
        for _ in range(3):
            start = time.monotonic()
            r = self.request(CLIENT)
            elapsed = time.monotonic() - start
            self.assertEqual(r.status, 502, r)
            self.assertLess(elapsed, 2.0, "a refused connection gets 502 at once")
        # The HTTPS application stops while ott holds kept-alive connections to it.
        self.assertEqual(self.status(PORTAL), 200)
        self.app.stop()
        start = time.monotonic()
        r = self.request(PORTAL)
        self.assertEqual(r.status, 502, r)
        self.assertLess(time.monotonic() - start, 2.0)
        # It is back: so is the portal.
        self.app = Backend(self.certs, port=self.app.port).start()
        rwgtest.wait_until("the application back", lambda: self.status(PORTAL) == 200)
        self.settled(check_fds=True)

    def test_slow_application_gets_504_after_the_timeout(self):
        start = time.monotonic()
        r = self.request(PORTAL, path=f"/userportal/slow?seconds={BACKEND_TIMEOUT + 4}")
        elapsed = time.monotonic() - start
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(elapsed, BACKEND_TIMEOUT - 0.2)
        self.assertLess(elapsed, BACKEND_TIMEOUT + 3)
        # An answer within the timeout comes through.
        r = self.request(PORTAL, path="/userportal/slow?seconds=0.5")
        self.assertEqual(r.status, 200, r)
        self.settled(check_fds=True)

    def test_bad_requests_get_4xx_and_ott_goes_on(self):
        cases = [
            ("non-UTF-8 path", b"GET /userportal/\xff\xfe\xc0 HTTP/1.1\r\nHost: portal.rwg.test"
             b"\r\nConnection: close\r\n\r\n"),
            ("over-long path", b"GET /userportal/" + b"a" * 100000 + b" HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nConnection: close\r\n\r\n"),
            ("over-long header", b"GET /userportal/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n"
             b"X-Big: " + b"b" * 200000 + b"\r\nConnection: close\r\n\r\n"),
            ("too many headers", b"GET /userportal/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n"
             + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"Connection: close\r\n\r\n"),
            ("non-UTF-8 header name", b"GET /userportal/headers HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nX-\xff\xfe: v\r\nConnection: close\r\n\r\n"),
            ("NUL in a header", b"GET /userportal/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n"
             b"X-Name: a\x00b\r\nConnection: close\r\n\r\n"),
            ("space in a header name", b"GET /userportal/headers HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nX Name: v\r\nConnection: close\r\n\r\n"),
            ("bad Content-Length", b"POST /userportal/upload HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nContent-Length: 12abc\r\nConnection: close\r\n\r\n"),
            ("two Content-Lengths", b"POST /userportal/upload HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n"
             b"Connection: close\r\n\r\nabcde"),
            ("bad chunk size", b"POST /userportal/upload HTTP/1.1\r\nHost: portal.rwg.test\r\n"
             b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
            ("endless chunk extension", b"POST /userportal/upload HTTP/1.1\r\n"
             b"Host: portal.rwg.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
             b"\r\n5;ext=" + b"e" * 300000 + b"\r\nhello\r\n0\r\n\r\n"),
            ("not HTTP", b"HELLO THERE\r\n\r\n"),
            ("bad version", b"GET /userportal/headers HTTP/9.9\r\nHost: portal.rwg.test\r\n\r\n"),
        ]
        for what, data in cases:
            r = self.raw(data)
            if what in ("bad chunk size", "endless chunk extension") and r is None:
                # The request went on its way before its body broke: closing is the answer.
                self.still_serving()
                continue
            self.assertIsNotNone(r, f"{what}: ott closed without an answer")
            self.assertTrue(400 <= r.status < 500 or (what == "bad version" and r.status == 505),
                            f"{what}: {r}")
            self.assertNotIn(b'"target"', r.body, f"{what} reached the application: {r}")
            self.still_serving()
        self.settled(check_fds=True)

    def test_request_smuggling_does_not_reach_an_admin_path(self):
        # Content-Length and chunked together: whatever ott makes of it, the admin path behind
        # it never reaches the application without a login.
        smuggled = (b"GET /admin/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
        body = b"0\r\n\r\n" + smuggled
        data = (b"POST /userportal/upload HTTP/1.1\r\nHost: portal.rwg.test\r\n"
                b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body)
        with self.tls(PORTAL) as s:
            s.sendall(data)
            s.settimeout(5)
            got = b""
            try:
                while True:
                    piece = s.recv(65536)
                    if not piece:
                        break
                    got += piece
            except (socket.timeout, ConnectionError, ssl.SSLError):
                pass
        self.assertNotIn(b'"/admin/headers"', got, "the smuggled admin request was forwarded")
        self.still_serving()
        self.settled(check_fds=True)

    def test_nothing_grows_over_rounds_of_every_kind_of_request(self):
        def round_():
            self.assertEqual(self.status(PORTAL), 200)
            self.assertEqual(self.status(PORTAL, "/nowhere"), 404)
            self.assertEqual(self.request(ADMIN, path="/admin/page").status, 303)
            r = self.login()
            value, _ = self.session_cookie(r)
            self.assertEqual(self.request(ADMIN, "POST", "/.rwg/logout",
                                          headers={"Cookie": f"{COOKIE}={value}"}).status // 100,
                             3)
            self.assertEqual(self.status(PORTAL, f"/userportal/slow?seconds={BACKEND_TIMEOUT+2}"),
                             504)
            with self.tls(PORTAL) as s:  # a download abandoned
                s.sendall(b"GET /userportal/big HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
                s.recv(65536)
            with self.tls(CLIENT) as s:  # a WebSocket closed (dropped ones: the WebSocket case)
                s.sendall((f"GET /userportal/ws HTTP/1.1\r\nHost: {CLIENT}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {ws_handshake_key()}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                f = s.makefile("rb")
                while f.readline() not in (b"\r\n", b""):
                    pass
                s.sendall(ws_frame(0x8, struct.pack(">H", 1000)))
                self.assertEqual(ws_read(f), (0x8, struct.pack(">H", 1000)))
                f.close()
            with self.tls(PORTAL) as s:  # a request never finished
                s.sendall(b"GET /userportal/headers HTTP/1.1\r\nHost: por")
            self.raw(b"GET /userportal/\xff HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
            try:
                self.tls("unknown.rwg.test").close()
            except ssl.SSLError:
                pass
            self.settled()
        round_()
        time.sleep(1)
        first = self.fds()
        for _ in range(3):
            round_()
        time.sleep(1)
        self.assertLessEqual(self.fds(), first + 1, "ott's descriptors grow round after round")
        self.assertEqual(self.session_keys(), [])


class LoginTest(OttFixture):
    def test_admin_path_needs_rwg_login_then_reaches_the_application(self):
        r = self.request(ADMIN, path="/admin/page?tab=users")
        self.assertEqual(r.status, 303, r)
        loc = urllib.parse.urlsplit(r.header("Location")[0])
        self.assertIn(loc.netloc, ("", ADMIN, f"{ADMIN}:{self.port}"))
        self.assertEqual(loc.path, "/.rwg/login")
        self.assertEqual(urllib.parse.parse_qs(loc.query)["next"], ["/admin/page?tab=users"])
        self.assertEqual(self.session_keys(), [])
        # The login page is rwg's own, a form; it never reaches the application.
        page = self.request(ADMIN, path="/.rwg/login?next=%2Fadmin%2Fpage")
        self.assertEqual(page.status, 200, page)
        self.assertNotIn(b"stand-in", page.body)

        r = self.login(next_path="/admin/page?tab=users")
        self.assertEqual(r.status, 303, r)
        back = urllib.parse.urlsplit(urllib.parse.urljoin(self.url(ADMIN, "/"),
                                                          r.header("Location")[0]))
        self.assertEqual((back.hostname, back.path, back.query), (ADMIN, "/admin/page", "tab=users"))
        value, attrs = self.session_cookie(r)
        self.assertIsNotNone(value, f"no {COOKIE} cookie: {r.headers}")
        self.assertIn("secure", attrs)
        self.assertIn("httponly", attrs)
        self.assertIn("samesite=lax", attrs)
        self.assertIn("path=/", attrs)
        self.assertFalse(any(a.startswith("domain") for a in attrs), attrs)  # __Host- rule
        self.assertGreaterEqual(len(value), 43, "a 256-bit random value")
        # Redis keeps the cookie's SHA-256, never the cookie.
        keys = self.session_keys()
        self.assertEqual(keys, [f"rwg:ott:session:{hashlib.sha256(value.encode()).hexdigest()}"])
        ttl = int(self.redis.cli("TTL", keys[0])[0])
        self.assertTrue(0 < ttl <= 8 * 3600, ttl)
        dump = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--raw", "DUMP", keys[0]],
                              capture_output=True, timeout=10).stdout
        self.assertNotIn(value.encode(), dump)
        # With the cookie: the admin path reaches the application, which never sees rwg's
        # cookie (the application's own cookies go through).
        cookie = {"Cookie": f"lang=fr; {COOKIE}={value}"}
        r = self.request(ADMIN, path="/admin/headers", headers=cookie)
        self.assertEqual(r.status, 200, r)
        seen = dict((k.lower(), v) for k, v in r.seen_headers())
        self.assertNotIn(COOKIE, seen.get("cookie", ""))
        self.assertIn("lang=fr", seen.get("cookie", ""))
        self.assertEqual(seen.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(self.request(ADMIN, path="/admin/page", headers=cookie).status, 200)
        self.assertGreater(self.account().last_login_unix, 0)
        # A forged cookie is no session.
        r = self.request(ADMIN, path="/admin/headers",
                         headers={"Cookie": f"{COOKIE}={'A' * len(value)}"})
        self.assertEqual(r.status, 303, r)
        # Two logins, two different sessions.
        value2, _ = self.session_cookie(self.login())
        self.assertNotEqual(value, value2)
        # Logout ends the session: the cookie opens nothing any more, its key is gone.
        r = self.request(ADMIN, "POST", "/.rwg/logout", headers=cookie)
        self.assertIn(r.status, (200, 303), r)
        self.assertEqual(self.request(ADMIN, path="/admin/headers", headers=cookie).status, 303)
        self.request(ADMIN, "POST", "/.rwg/logout", headers={"Cookie": f"{COOKIE}={value2}"})
        self.assertEqual(self.session_keys(), [])
        self.settled(check_fds=True)

    def test_wrong_passwords_lock_the_account(self):
        # Failures below the limit, then the right password: a login (the count starts again).
        for _ in range(LOGIN_FAILURES - 1):
            r = self.login(password="not-the-password-1")
            self.assertEqual(r.status, 401, r)
            self.assertIsNone(self.session_cookie(r)[0])
            self.assertIn(b"password", r.body.lower(), "the form again")
        self.assertEqual(self.login().status, 303)
        # LOGIN_FAILURES in a row: locked, the right password refused too.
        for _ in range(LOGIN_FAILURES):
            self.assertEqual(self.login(password="not-the-password-2").status, 401)
        r = self.login()
        self.assertNotEqual(r.status, 303, r)
        self.assertTrue(400 <= r.status < 500, r)
        self.assertIsNone(self.session_cookie(r)[0])
        self.assertGreater(self.account().locked_until_unix, time.time())
        # Unlocked by the admin: the right password works again.
        self.rpc("UpdateAccount", self.pb.ott.UpdateAccountRequest(
            account=self.pb.ott.Account(name=ACCOUNT), update_mask=["unlock"]))
        self.assertEqual(self.account().locked_until_unix, 0)
        r = self.login()
        self.assertEqual(r.status, 303, r)
        self.assertIsNotNone(self.session_cookie(r)[0])
        # Unknown and disabled accounts get the same 401.
        self.assertEqual(self.login(name="mallory", password="whatever-password").status, 401)
        self.rpc("UpdateAccount", self.pb.ott.UpdateAccountRequest(
            account=self.pb.ott.Account(name=ACCOUNT, enabled=False), update_mask=["enabled"]))
        r = self.login()
        self.assertTrue(400 <= r.status < 500, r)
        self.assertIsNone(self.session_cookie(r)[0])
        self.settled(check_fds=True)

    def test_next_only_follows_a_local_path(self):
        for evil in ("https://evil.example/x", "//evil.example/x", "/\\evil.example/x",
                     "javascript:alert(1)", "\\\\evil.example"):
            evil_url = self.url(ADMIN, "/.rwg/login?" + urllib.parse.urlencode({"next": evil}))
            page = self.request(ADMIN, path="/.rwg/login?" + urllib.parse.urlencode(
                {"next": evil}))
            self.assertEqual(page.status, 200, page)
            r = self.submit_login(ADMIN, evil_url, page.body, ACCOUNT, ACCOUNT_PASSWORD,
                                  next_override=evil)
            self.assertEqual(r.status, 303, r)
            loc = r.header("Location")[0]
            target = urllib.parse.urlsplit(urllib.parse.urljoin(self.url(ADMIN, "/"), loc))
            self.assertIn(target.netloc, (ADMIN, f"{ADMIN}:{self.port}"), f"next={evil}: {loc}")
            self.assertFalse(loc.startswith("//") or loc.startswith("/\\"), loc)
            self.assertEqual(target.scheme, "https", loc)
        self.settled()


class BanTest(OttFixture):
    def test_refusals_ban_the_source(self):
        # The fixture starts ott with a high --ban-refusals; this case starts it again with 5.
        self.stop_ott()
        self.start_ott(["--ban-refusals", "5"])
        rwgtest.wait_until("served", lambda: self.status(PORTAL) == 200, timeout=15)
        for _ in range(6):
            self.status(PORTAL, "/not-on-a-list")
        rwgtest.wait_until("the ban in Redis",
                           lambda: self.redis.cli("EXISTS", "rwg:ban:ott:127.0.0.1") == ["1"],
                           timeout=5)
        self.assertNotEqual(self.status(PORTAL), 200, "a banned source is served")


class LimitsTest(OttFixture):
    def test_connections_per_source_are_limited(self):
        self.stop_ott()
        self.start_ott(["--max-connections-per-source", "4"])
        rwgtest.wait_until("served", lambda: self.status(PORTAL) == 200, timeout=15)
        held = [self.tls(PORTAL) for _ in range(4)]
        try:
            for s in held:  # each of the four carries a request
                s.sendall(b"GET /userportal/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
                self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
            self.assertNotEqual(self.status(PORTAL), 200,
                                "a fifth connection from the source served")
        finally:
            for s in held:
                s.close()
        rwgtest.wait_until("served again", lambda: self.status(PORTAL) == 200, timeout=10)
        self.settled()

    def test_requests_per_source_are_limited(self):
        self.stop_ott()
        self.start_ott(["--requests-per-source", "5"])
        rwgtest.wait_until("served", lambda: self.status(PORTAL) == 200, timeout=15)
        statuses = [self.status(PORTAL) for _ in range(40)]
        self.assertIn(200, statuses)
        self.assertIn(429, statuses, "40 requests at once all served")
        time.sleep(2)
        self.assertEqual(self.status(PORTAL), 200, "served again once the rate is back")
        self.settled()

    def test_unfinished_header_and_idle_connections_are_closed(self):
        with self.tls(PORTAL) as s:
            s.sendall(b"GET /userportal/headers HTTP/1.1\r\nHost: por")
            s.settimeout(HEADER_TIMEOUT + 10)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionError, ssl.SSLError):
                pass
            except socket.timeout:
                self.fail("a request's header never finished: the connection stays open")
        with self.tls(PORTAL) as s:
            s.sendall(b"GET /userportal/headers HTTP/1.1\r\nHost: portal.rwg.test\r\n\r\n")
            r = http.client.HTTPResponse(s)
            r.begin()
            self.assertEqual(r.status, 200)
            r.read()
            s.settimeout(IDLE_TIMEOUT + 10)
            try:
                self.assertEqual(s.recv(4096), b"", "ott sent more after the answer")
            except (ConnectionError, ssl.SSLError):
                pass
            except socket.timeout:
                self.fail("an idle kept-alive connection stays open")
        # rwg's login form sent a byte a second: the header timeout covers the whole form.
        with self.tls(PORTAL) as s:
            s.sendall(b"POST /.rwg/login HTTP/1.1\r\nHost: portal.rwg.test\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 4000\r\n\r\n")
            start = time.monotonic()
            s.settimeout(1)
            closed = False
            while not closed and time.monotonic() - start < HEADER_TIMEOUT + 10:
                try:
                    s.sendall(b"a")
                    closed = s.recv(4096) == b""
                except socket.timeout:
                    pass
                except (ConnectionError, ssl.SSLError):
                    closed = True
            self.assertTrue(closed, "a form sent a byte at a time holds the connection")
            self.assertLess(time.monotonic() - start, HEADER_TIMEOUT + 2)
        self.settled(check_fds=True)


class ApiTest(OttFixture):
    def test_api_checks_its_input_and_its_caller(self):
        grpc, ott = self.pb.grpc, self.pb.ott
        def code(method, request, metadata=None):
            try:
                getattr(self.api, method)(request, metadata=self.md if metadata is None
                                          else metadata, timeout=10)
            except grpc.RpcError as e:
                return e.code()
            return grpc.StatusCode.OK
        self.assertEqual(code("ListDomains", ott.ListDomainsRequest(), metadata=[]),
                         grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(code("ListDomains", ott.ListDomainsRequest(),
                              metadata=[("authorization", "Bearer nope")]),
                         grpc.StatusCode.UNAUTHENTICATED)
        good = dict(service=ott.SERVICE_USER_PORTAL, backend=self.backend(), enabled=True)
        self.assertEqual(code("AddDomain", ott.AddDomainRequest(domain=ott.Domain(
            fqdn=PORTAL, **good))), grpc.StatusCode.ALREADY_EXISTS)
        # An FQDN in capitals is refused or kept in lower case (the name a browser sends).
        try:
            added = self.rpc("AddDomain", ott.AddDomainRequest(domain=ott.Domain(
                fqdn="Upper.rwg.test", **good)))
            self.assertEqual(added.fqdn, "upper.rwg.test")
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        for fqdn in ("", "bad_name..test", "a" * 300, "x.test/path",
                     "*.rwg.test"):
            self.assertEqual(code("AddDomain", ott.AddDomainRequest(domain=ott.Domain(
                fqdn=fqdn, **good))), grpc.StatusCode.INVALID_ARGUMENT, fqdn)
        self.assertEqual(code("AddDomain", ott.AddDomainRequest(domain=ott.Domain(
            fqdn="new.rwg.test", service=ott.SERVICE_UNSPECIFIED, backend=self.backend()))),
            grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code("AddAccount", ott.AddAccountRequest(account=ott.Account(
            name="bob", password="short", enabled=True))), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code("AddAccount", ott.AddAccountRequest(account=ott.Account(
            name="bad name", password="long-enough-pass", enabled=True))),
            grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(code("UpdateDomain", ott.UpdateDomainRequest(
            domain=ott.Domain(fqdn=PORTAL, enabled=False))), grpc.StatusCode.INVALID_ARGUMENT)
        # Passwords are never given back, in the API or in Redis.
        for a in self.rpc("ListAccounts", ott.ListAccountsRequest()).accounts:
            self.assertEqual(a.password, "")
        stored = subprocess.run(["redis-cli", "-p", str(self.redis.port), "--raw", "HGETALL",
                                 "rwg:ott:accounts"], capture_output=True, timeout=10).stdout
        self.assertIn(ACCOUNT.encode(), stored)
        self.assertNotIn(ACCOUNT_PASSWORD.encode(), stored)
        # The services and their default lists.
        services = {s.name: s for s in self.rpc("ListServices",
                                                ott.ListServicesRequest()).services}
        self.assertEqual(set(services), {"user-portal", "web-client", "embedded-user-portal",
                                         "web-admin"})
        domain = [d for d in self.rpc("ListDomains", ott.ListDomainsRequest()).domains
                  if d.fqdn == PORTAL][0]
        self.assertEqual(list(domain.effective_paths.user), PATHS["user"])
        self.settled()


def artifact_dir():
    d = os.path.join(os.environ.get("RWG_ARTIFACT_DIR")
                     or os.path.join(tempfile.gettempdir(), "rwg-artifacts"), "ott")
    os.makedirs(d, exist_ok=True)
    return d


class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe (the DevTools protocol, JSON
    messages ending with NUL on descriptors 3 and 4)."""

    def __init__(self, tmp, host_rules, ca):
        self.tmp = tmp
        exe = shutil.which("chromium")
        if not exe:
            raise AssertionError("chromium is not installed (Debian's chromium; tools/rwg "
                                 "installs it)")
        home = os.path.join(tmp, "chrome-home")
        nssdb = os.path.join(home, ".pki", "nssdb")
        os.makedirs(nssdb)
        for args in (["-N", "--empty-password"],
                     ["-A", "-t", "C,,", "-n", "rwg test CA", "-i", ca]):
            r = subprocess.run(["certutil", "-d", f"sql:{nssdb}", *args], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise AssertionError(f"certutil {args[0]} failed: {r.stderr} (libnss3-tools)")
        import fcntl
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # The child's ends moved above 3 and 4, which they become in Chromium.
        for fd in (to_chrome_r, from_chrome_w):
            high = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)
            os.close(fd)
            if fd == to_chrome_r:
                to_chrome_r = high
            else:
                from_chrome_w = high
        self.log_path = os.path.join(tmp, "chromium.log")
        self.log = open(self.log_path, "wb")
        # The pipe's ends become Chromium's descriptors 3 (commands in) and 4 (answers out).
        wire = (f"exec 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- "
                f"{from_chrome_w}>&-; exec \"$@\"")
        self.proc = subprocess.Popen(
            ["bash", "-c", wire, "chromium", exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-pipe",
             f"--user-data-dir={os.path.join(tmp, 'chrome-profile')}",
             f"--host-resolver-rules={host_rules}", "--window-size=1024,768", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            pass_fds=(to_chrome_r, from_chrome_w), env={**os.environ, "HOME": home},
            start_new_session=True)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        self.w = os.fdopen(to_chrome_w, "wb")
        self.r = from_chrome_r
        self.buf = b""
        self.next_id = 0
        self.events = []

    def close(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # Chromium and its helper processes
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
        self.w.close()
        os.close(self.r)
        self.log.close()

    def why(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def _message(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc is None or self.proc.poll() is not None:
                raise AssertionError("Chromium did not answer "
                                     f"(exit {self.proc and self.proc.poll()}): "
                                     f"{self.why()}")
            ready, _, _ = select.select([self.r], [], [], min(left, 1))
            if ready:
                piece = os.read(self.r, 1 << 20)
                if not piece:
                    raise AssertionError(f"Chromium closed its pipe: {self.why()}")
                self.buf += piece
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        self.w.flush()
        while True:
            m = self._message(timeout)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise AssertionError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_event(self, name, session, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == name and e.get("sessionId") == session:
                    del self.events[:i + 1]
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} within {timeout}s")
            self.events.append(self._message(left))

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Network.enable", session=session)
        return session

    def navigate(self, session, url):
        self.events.clear()
        r = self.send("Page.navigate", {"url": url}, session=session)
        if r.get("errorText"):
            raise AssertionError(f"Chromium could not load {url}: {r['errorText']}")
        self.wait_event("Page.loadEventFired", session)

    def eval(self, session, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session=session)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, session, path):
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


class BrowserTest(OttFixture):
    def test_chromium_opens_the_portal_and_logs_in_for_an_admin_path(self):
        rules = f"MAP {PORTAL} 127.0.0.1,MAP {ADMIN} 127.0.0.1"
        browser = Chromium(self.tmp, rules, self.certs["ca"])
        self.addCleanup(browser.close)
        out = artifact_dir()
        page = browser.open_page()
        # The portal: the page through rwg, its certificate trusted through the test CA.
        browser.navigate(page, self.url(PORTAL, "/userportal/page"))
        self.assertEqual(browser.eval(page, "document.title"), "Stand-in User Portal",
                         browser.eval(page, "document.documentElement.outerHTML"))
        self.assertEqual(browser.eval(page, "document.getElementById('heading').textContent"),
                         "MiVoice 5000 User Portal (stand-in)")
        browser.screenshot(page, os.path.join(out, "portal.png"))
        print(f"\nscreenshots in {out}", file=sys.stderr)
        # The portal's form, posted by the browser through rwg.
        browser.events.clear()
        browser.eval(page, "document.querySelector('input[name=note]').value = 'from chromium';"
                           "document.getElementById('settings').submit(); true")
        browser.wait_event("Page.loadEventFired", page)
        got = json.loads(browser.eval(page, "document.body.innerText"))
        self.assertEqual(got["fields"]["note"], ["from chromium"])
        self.assertEqual(got["fields"]["forward"], ["2001"])
        # An admin path: rwg's login page first.
        browser.navigate(page, self.url(ADMIN, "/admin/page"))
        href = urllib.parse.urlsplit(browser.eval(page, "location.href"))
        self.assertEqual((href.hostname, href.path), (ADMIN, "/.rwg/login"))
        browser.screenshot(page, os.path.join(out, "rwg-login.png"))
        browser.events.clear()
        browser.eval(page, f"""(() => {{
            const f = document.querySelector('form');
            const pw = f.querySelector('input[type=password]');
            const name = f.querySelector('input:not([type=password]):not([type=hidden])'
                                         + ':not([type=submit])');
            name.value = {json.dumps(ACCOUNT)};
            pw.value = {json.dumps(ACCOUNT_PASSWORD)};
            f.submit();
            return true; }})()""")
        browser.wait_event("Page.loadEventFired", page)
        href = urllib.parse.urlsplit(browser.eval(page, "location.href"))
        self.assertEqual((href.hostname, href.path), (ADMIN, "/admin/page"))
        self.assertEqual(browser.eval(page, "document.getElementById('heading').textContent"),
                         "MiVoice 5000 User Portal (stand-in)")
        browser.screenshot(page, os.path.join(out, "admin-page.png"))
        # The cookie as the browser keeps it; page scripts cannot read it.
        cookies = browser.send("Network.getCookies", {"urls": [self.url(ADMIN, "/")]},
                               session=page)["cookies"]
        ours = [c for c in cookies if c["name"] == COOKIE]
        self.assertEqual(len(ours), 1, cookies)
        self.assertTrue(ours[0]["secure"])
        self.assertTrue(ours[0]["httpOnly"])
        self.assertEqual(ours[0]["sameSite"], "Lax")
        self.assertEqual(ours[0]["path"], "/")
        self.assertNotIn(COOKIE, browser.eval(page, "document.cookie"))
        self.assertEqual(len(self.session_keys()), 1)
        browser.close()
        self.settled(check_fds=True)


if __name__ == "__main__":
    unittest.main()
