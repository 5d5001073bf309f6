# rwg chart tests (helm test), run by python3 in the rwg/chart-test image:
#   chart-test.py health        grpc.health.v1 of control, sip-edge, provisioning, every relay,
#                               sync, tma and ott
#   chart-test.py provisioning  a file fetched over HTTPS through the hash; a wrong hash: 404
#   chart-test.py register      a REGISTER over TLS through the public SIP Service
#   chart-test.py sync          an unsigned sync API request through the iPBX's Service: 401
#                               with WWW-Authenticate: OAuth and an oauth_problem
# Settings come from the environment (the test pod's spec).
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

ENV = os.environ


def say(*a):
    print(*a, flush=True)


def fail(msg):
    say("FAIL:", msg)
    sys.exit(1)


def rwgctl(*args, server=None, check=True):
    env = dict(ENV)
    if server:
        env["RWG_SERVER"] = server
    p = subprocess.run(["/usr/local/bin/rwgctl", "--timeout", "10", *args], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if check and p.returncode != 0:
        fail(f"rwgctl {' '.join(args)} ({server or env.get('RWG_SERVER')}): {p.stdout.strip()}")
    return p.stdout


def health():
    targets = ENV["RWG_HEALTH_TARGETS"].split()
    for t in targets:
        deadline = time.monotonic() + 60
        while True:
            out = rwgctl("health", server=t, check=False)
            if out.strip() == "SERVING":
                break
            if time.monotonic() > deadline:
                fail(f"{t}: {out.strip()}")
            time.sleep(2)
        say(f"ok: {t} SERVING")


def provisioning():
    rwgctl("login")
    try:
        h = json.loads(rwgctl("-o", "json", "hash", "show"))
    finally:
        rwgctl("logout", check=False)
    key = h.get("key") or h.get("hash", {}).get("key")
    if not key or not re.fullmatch(r"[0-9a-f]{32,}", key):
        fail(f"no hash key in {h}")
    ctx = public_context()
    base = ENV["RWG_PROVISIONING_URL"].rstrip("/")
    name = ENV.get("RWG_TEST_FILE", "")

    def get(path):
        try:
            with urllib.request.urlopen(base + path, context=ctx, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    if name:
        status, body = get(f"/{key}/ftp_67xxi/{name}")
        if status != 200:
            fail(f"GET /<hash>/ftp_67xxi/{name}: {status}")
        want = ENV.get("RWG_TEST_FILE_CONTENT")
        if want is not None and body.decode(errors="replace") != want:
            fail(f"{name}: content differs from provisioning.files")
        say(f"ok: {name} through the hash ({len(body)} bytes)")
    else:
        status, _ = get(f"/{key}/ftp_67xxi/000000000000.cfg")
        if status != 404:
            fail(f"a missing file under the hash: {status}, not 404")
        say("ok: HTTPS answers under the hash (no file in provisioning.files to fetch)")
    wrong = ("0" if key[0] != "0" else "1") + key[1:]
    status, _ = get(f"/{wrong}/ftp_67xxi/{name or 'aastra.cfg'}")
    if status != 404:
        fail(f"a wrong hash: {status}, not 404")
    say("ok: a wrong hash gets 404")


def public_context():
    ca = ENV.get("RWG_PUBLIC_CA")
    if ca and not os.path.exists(ca):
        ca = None  # an existing certificate Secret without ca.crt
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # reached by the Service's name, not the public name
    if not ca:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def sync():
    ca = ENV.get("RWG_SYNC_CA")
    if ca and not os.path.exists(ca):
        ca = None  # an existing certificate Secret without ca.crt
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # a given certificate need not name the Service
    if not ca:
        ctx.verify_mode = ssl.CERT_NONE
    url = ENV["RWG_SYNC_URL"].rstrip("/") + "/api/v1/devices"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                fail(f"GET {url} unsigned: {r.status}, not 401")
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read().decode(errors="replace")
            break
        except OSError as e:
            if time.monotonic() > deadline:
                fail(f"GET {url}: {e}")
            time.sleep(2)
    if status != 401:
        fail(f"GET {url} unsigned: {status}, not 401")
    challenge = headers.get("WWW-Authenticate", "")
    if not challenge.startswith("OAuth"):
        fail(f"401 without WWW-Authenticate: OAuth ({challenge!r})")
    if "oauth_problem=" not in body:
        fail(f"401 without an oauth_problem: {body[:200]!r}")
    say(f"ok: an unsigned request is refused: 401, {challenge}, {body[:80]}")


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def register():
    host, port = ENV["RWG_SIP_HOST"], int(ENV["RWG_SIP_PORT"])
    realm = ENV["RWG_PUBLIC_NAME"]
    user, password = ENV.get("RWG_TEST_USER", ""), ENV.get("RWG_TEST_PASSWORD", "")
    ctx = public_context()
    sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=15))
    local = sock.getsockname()
    call_id, tag, buf = os.urandom(8).hex(), os.urandom(4).hex(), [b""]
    aor = user or "chart-test"

    def read():
        while b"\r\n\r\n" not in buf[0]:
            chunk = sock.recv(65536)
            if not chunk:
                fail("the edge closed the connection")
            buf[0] += chunk
        head, rest = buf[0].split(b"\r\n\r\n", 1)
        m = re.search(rb"(?im)^(content-length|l)\s*:\s*(\d+)", head)
        n = int(m.group(2)) if m else 0
        while len(rest) < n:
            rest += sock.recv(65536)
        buf[0] = rest[n:]
        return head.decode(errors="replace")

    def send(cseq, expires, auth=None):
        lines = [f"REGISTER sip:{realm} SIP/2.0",
                 f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK{os.urandom(6).hex()};rport",
                 f"From: <sip:{aor}@{realm}>;tag={tag}", f"To: <sip:{aor}@{realm}>",
                 f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER", "Max-Forwards: 70",
                 f"Contact: <sip:{aor}@{local[0]}:{local[1]};transport=tls>",
                 f"Expires: {expires}", "User-Agent: rwg-chart-test"]
        if auth:
            lines.append(f"Authorization: {auth}")
        sock.sendall(("\r\n".join(lines + ["Content-Length: 0", "", ""])).encode())
        return read()

    def authorized(cseq, expires):
        first = send(cseq, expires)
        if not first.startswith("SIP/2.0 401"):
            fail(f"REGISTER without credentials: {first.splitlines()[0]}, not 401")
        ch = re.search(r'(?im)^WWW-Authenticate:\s*Digest\s+(.*)$', first)
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', ch.group(1)))
        if params.get("realm") != realm:
            fail(f"challenge realm {params.get('realm')!r}, not the public name {realm!r}")
        if not user:
            return first
        uri = f"sip:{realm}"
        ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"REGISTER:{uri}")
        cnonce, nc = os.urandom(4).hex(), "00000001"
        resp = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        auth = (f'Digest username="{user}", realm="{realm}", nonce="{params["nonce"]}", '
                f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, '
                f'cnonce="{cnonce}"')
        if "opaque" in params:
            auth += f', opaque="{params["opaque"]}"'
        return send(cseq + 1, expires, auth)

    answer = authorized(1, 300)
    if not user:
        say("ok: REGISTER over TLS challenged with the public name as realm")
        return
    if not answer.startswith("SIP/2.0 200"):
        fail(f"REGISTER of {user}: {answer.splitlines()[0]}")
    say(f"ok: {user} registered through the edge")
    answer = authorized(3, 0)
    if not answer.startswith("SIP/2.0 200"):
        fail(f"un-REGISTER of {user}: {answer.splitlines()[0]}")
    say(f"ok: {user} unregistered")


{"health": health, "provisioning": provisioning, "register": register,
 "sync": sync}[sys.argv[1]]()
