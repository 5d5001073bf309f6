"""Helpers for rwg integration tests: real redis-server, real rwg services, rwgctl.

Everything listens on 127.0.0.1 with free ports and lives in a temporary directory; every
process a test starts is stopped by the test.
"""
import json
import re
import os
import selectors
import signal
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.environ.get("RWG_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))


_handed_out = set()


def shard_tests(tests):
    """The tests of this shard when RWG_TEST_SHARD is "K/N" (K of N, from 1): the module's tests
    sorted by id and dealt in turn, so that N ctest entries run one module in parallel and a
    test added later falls in one of them. Without it, every test."""
    spec = os.environ.get("RWG_TEST_SHARD", "")
    if not spec:
        return tests
    m = re.fullmatch(r"([1-9][0-9]*)/([1-9][0-9]*)", spec)
    if m is None or int(m.group(1)) > int(m.group(2)):
        raise ValueError(f"RWG_TEST_SHARD={spec!r}: expected K/N with 1 <= K <= N")
    k, n = int(m.group(1)), int(m.group(2))
    flat = []

    def walk(suite):
        for t in suite:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                flat.append(t)
    walk(tests)
    flat.sort(key=lambda t: t.id())
    return unittest.TestSuite(t for i, t in enumerate(flat) if i % n == k - 1)


def _port_range():
    """Where free_port chooses: below the kernel's ephemeral ports, which outgoing connections
    (of this test or of another one running beside it) take; below rwg's default media ports
    (20000-31000: control refuses a SIP port in them) and Kubernetes' NodePorts; above the
    cluster's own (etcd, kubelet: 2379-10259)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return 12000, min(low, 20000)


def free_port():
    """A free TCP and UDP port, never one this process was given before: ports are often
    chosen several at a time before anything listens on them. Chosen at random outside the
    ephemeral range: a port the kernel offered for bind(0) was often taken, before the service
    listened on it, by an outgoing connection of a test running beside."""
    low, high = _port_range()
    for _ in range(10000):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise AssertionError(f"no free port left in {low}-{high}")


def process_cpu_seconds(pids):
    """User + system CPU time of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_until(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def resp_command(port, *args, timeout=5.0):
    """Sends one Redis command over RESP and returns the raw reply bytes."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        payload += b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        # Bulk strings: read the announced length.
        if data.startswith(b"$") and not data.startswith(b"$-1"):
            n = int(data[1:data.index(b"\r\n")])
            need = data.index(b"\r\n") + 2 + n + 2
            while len(data) < need:
                data += s.recv(65536)
        return data


def _resp_read(f):
    """One RESP reply from the buffered socket file `f`, as Python values (bytes, int, None,
    lists; an error reply raises)."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


def _resp_encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


class RedisQuery:
    """A connection to Redis for reading its state in tests: query() returns the reply
    parsed (nested arrays included)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def query(self, *args):
        self.sock.sendall(_resp_encode(args))
        return _resp_read(self.f)

    def close(self):
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def resp_command_end(buf, start=0):
    """Where the client->server RESP command starting at `start` ends in `buf`, or None when
    it has not all arrived. A command is an array of bulk strings ("*N\r\n" then N times
    "$len\r\n<bytes>\r\n"), as hiredis sends; an inline command is one line."""
    if start >= len(buf):
        return None
    eol = buf.find(b"\r\n", start)
    if eol < 0:
        return None
    if buf[start:start + 1] != b"*":
        return eol + 2
    pos = eol + 2
    for _ in range(int(buf[start + 1:eol])):
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        if buf[pos:pos + 1] != b"$":
            raise ValueError(f"not a bulk string at {pos}: {buf[pos:pos + 20]!r}")
        pos = eol + 2 + int(buf[pos + 1:eol]) + 2
        if pos > len(buf):
            return None
    return pos


def resp_reply_end(buf, start=0):
    """Where the server->client RESP reply starting at `start` ends in `buf`, or None when it
    has not all arrived (RESP2, and RESP3's types)."""
    if start >= len(buf):
        return None
    eol = buf.find(b"\r\n", start)
    if eol < 0:
        return None
    kind, pos = buf[start:start + 1], eol + 2
    if kind in (b"$", b"=", b"!"):
        n = int(buf[start + 1:eol])
        if n < 0:
            return pos
        return pos + n + 2 if pos + n + 2 <= len(buf) else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        n = int(buf[start + 1:eol])
        for _ in range(max(n, 0) * (2 if kind in (b"%", b"|") else 1)):
            pos = resp_reply_end(buf, pos)
            if pos is None:
                return None
        return pos
    return pos  # + - : _ , # ( : one line


class RedisCutProxy:
    """A TCP proxy between services and redis-server that makes Redis fail in the middle of
    a request. It relays bytes both ways and counts the commands clients send (on every
    connection; a pipeline is several). Armed with K, it relays the next K commands and their
    replies; at the command after them it closes every connection (each as soon as the
    replies of what it relayed on it are relayed) and closes new ones at once, until
    disarmed. Armed with lose_reply, that command after them reaches Redis (and is applied)
    but its reply is lost: Redis failing just after a write."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.budget = None  # None: not armed; else commands still relayed before the cut
        self.lose_reply = False
        self.cut = False    # cut: connections closed, new ones closed at once
        self.relayed = []   # the commands' names relayed since arming, then the one cut at
        self.cuts = 0
        self.peer = {}      # socket -> the other end of its pair
        self.is_client = {}  # socket -> True for the service's end
        self.pending = {}   # client socket -> bytes of a command not all arrived
        self.replies = {}   # upstream socket -> bytes of a reply not all arrived
        self.outstanding = {}  # client socket -> commands relayed whose replies were not
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="redis-cut-proxy")
        self.thread.start()

    def arm(self, k, lose_reply=False):
        with self.lock:
            self.budget, self.lose_reply, self.relayed, self.cut = k, lose_reply, [], False

    def disarm(self):
        """Relays everything again; returns the names of the commands relayed while armed
        (and of the one cut at, last, marked with a '!')."""
        with self.lock:
            relayed = list(self.relayed)
            self.budget, self.cut = None, False
        return relayed

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        for s in list(self.peer):
            s.close()
        self.listener.close()

    def _close_pair(self, s):
        other = self.peer.pop(s, None)
        for x in (s, other):
            if x is None:
                continue
            self.peer.pop(x, None)
            self.is_client.pop(x, None)
            self.pending.pop(x, None)
            self.replies.pop(x, None)
            self.outstanding.pop(x, None)
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()

    def _cut(self):
        """Every connection closed, but those still owed replies: when they are relayed."""
        self.cut = True
        self.cuts += 1
        for s in [x for x, c in list(self.is_client.items()) if c]:
            if s in self.peer and self.outstanding.get(s, 0) == 0:
                self._close_pair(s)

    def _accept(self):
        client, _ = self.listener.accept()
        with self.lock:
            if self.cut:
                client.close()
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:
            client.close()
            return
        upstream.settimeout(5)
        client.settimeout(5)
        self.peer[client], self.peer[upstream] = upstream, client
        self.is_client[client], self.is_client[upstream] = True, False
        self.pending[client], self.replies[upstream], self.outstanding[client] = b"", b"", 0
        self.sel.register(client, selectors.EVENT_READ)
        self.sel.register(upstream, selectors.EVENT_READ)

    def _lose_reply_of(self, s, command):
        """`command` sent to Redis, its reply read and dropped, then everything cut."""
        up = self.peer[s]
        up.sendall(command)
        buf = self.replies[up]
        while resp_reply_end(buf) is None:
            data = up.recv(65536)
            if not data:
                break
            buf += data
        self._close_pair(s)
        self._cut()

    def _from_client(self, s):
        data = s.recv(65536)
        if not data:
            self._close_pair(s)
            return
        buf = self.pending[s] + data
        start = 0
        with self.lock:
            while True:
                end = resp_command_end(buf, start)
                if end is None:
                    break
                command = buf[start:end]
                name = command.split(b"\r\n")[2][:16].decode(errors="replace") \
                    if command.startswith(b"*") else command[:16].decode(errors="replace")
                if self.cut:
                    # Nothing more reaches Redis; the connection goes once owed nothing.
                    if self.outstanding.get(s, 0) == 0:
                        self._close_pair(s)
                    else:
                        self.pending[s] = b""
                    return
                if self.budget is not None:
                    if self.budget == 0:
                        self.relayed.append("!" + name)
                        if self.lose_reply:
                            self._lose_reply_of(s, command)
                        else:
                            self.pending[s] = b""
                            self._cut()
                        return
                    self.budget -= 1
                    self.relayed.append(name)
                self.peer[s].sendall(command)
                self.outstanding[s] += 1
                start = end
        self.pending[s] = buf[start:]

    def _from_upstream(self, s):
        data = s.recv(65536)
        if not data:
            self._close_pair(s)
            return
        client = self.peer[s]
        client.sendall(data)
        buf, start = self.replies[s] + data, 0
        while True:
            end = resp_reply_end(buf, start)
            if end is None:
                break
            self.outstanding[client] = max(0, self.outstanding[client] - 1)
            start = end
        self.replies[s] = buf[start:]
        with self.lock:
            if self.cut and self.outstanding[client] == 0:
                self._close_pair(s)

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    if s is self.listener:
                        self._accept()
                    elif s in self.peer:
                        (self._from_client if self.is_client[s] else self._from_upstream)(s)
                except (OSError, ValueError, IndexError):
                    if s is not self.listener and s in self.peer:
                        self._close_pair(s)


class Redis:
    """A real redis-server with AOF persistence in `directory`."""

    def __init__(self, directory, port=None, fsync="always"):
        self.dir = directory
        self.port = port or free_port()
        self.fsync = fsync
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "",
             "--enable-debug-command", "local", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("redis PING", self._pong)
        return self

    def _pong(self):
        try:
            return resp_command(self.port, "PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def cmd(self, *args):
        return resp_command(self.port, *args)

    def cli(self, *args):
        """One command through redis-cli: the reply's lines (an array's elements; a nil or an
        empty array gives no line)."""
        r = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *map(str, args)],
                           capture_output=True, text=True, timeout=10, check=True)
        return [l for l in r.stdout.split("\n") if l]


def full_leak_stacks():
    """Environment for a service whose leak reports need complete stacks: under
    AddressSanitizer (the sanitizer build), allocations inside the Debian libraries (built
    without frame pointers) are then traced through them, so that tools/lsan.supp can name the
    library function that leaks. Slower; empty outside the sanitizer build."""
    options = os.environ.get("ASAN_OPTIONS")
    return {"ASAN_OPTIONS": options + ":fast_unwind_on_malloc=0"} if options else {}


class Service:
    """An rwg service binary started with --port-file; logs go to a file."""

    def __init__(self, name, workdir, args):
        self.name = name
        self.workdir = workdir
        self.args = args
        self.proc = None
        self.ports = None
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.env = {}  # added to the environment of the process
        self.prefix = []  # what the binary runs under (valgrind, ...)
        self.grpc_listen = "127.0.0.1:0"  # a fixed port to start again on the same address

    def start(self, expect_healthy=True):
        port_file = os.path.join(self.workdir, f"{self.name}.ports")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.prefix + [os.path.join(BIN, self.name), "--grpc-listen", self.grpc_listen, "--metrics-listen",
             "127.0.0.1:0", "--port-file", port_file] + self.args,
            stdout=self.log, stderr=self.log, env={**os.environ, **self.env} if self.env else None)
        wait_until(f"{self.name} port file",
                   lambda: os.path.exists(port_file) or self.proc.poll() is not None)
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.read_log()}")
        with open(port_file) as f:
            self.ports = json.load(f)
        return self

    def stop(self):
        """SIGTERM; returns the exit code."""
        code = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
        elif self.proc:
            code = self.proc.returncode
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
        return code

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    @property
    def grpc_address(self):
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def metrics_url(self):
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"


def make_certs(directory):
    """A throwaway CA and a server certificate for 127.0.0.1/localhost."""
    def run(*args):
        subprocess.run(args, check=True, cwd=directory, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "ext"), "w") as f:
        # 127.0.0.2 is where the tests' iPBX (Kamailio) listens; sofia-sip matches the host it
        # connects to against the certificate's DNS names (and CN) as text, IP entries unread.
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,DNS:127.0.0.2\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "server.pem")
    return {k: os.path.join(directory, f) for k, f in
            (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


class Rwgctl:
    def __init__(self, server, ca_cert, config_dir):
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("RWG_"):
                del self.env[k]
        self.env.update({"RWG_SERVER": server, "RWG_CA_CERT": ca_cert,
                         "RWG_CONFIG_DIR": config_dir})
        # Under the sanitizer stage, rwgctl (a command that exits at once) keeps ASan's checks
        # but not the leak check at exit: gRPC's TLS handshake still running on its own threads
        # when the command returns was seen, rarely, as a libcrypto block with no rwg frame.
        # rwgctl's code is leak-checked in process by its unit tests (label unit).
        if "ASAN_OPTIONS" in self.env:
            self.env["ASAN_OPTIONS"] += ":detect_leaks=0"

    def run(self, *args, password=None, stdin=None, env=None, timeout=60):
        e = dict(self.env)
        if password is not None:
            e["RWG_PASSWORD"] = password
        if env:
            e.update(env)
        return subprocess.run([os.path.join(BIN, "rwgctl"), *args], input=stdin, env=e,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        if r.returncode != 0:
            raise AssertionError(f"rwgctl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def json(self, *args, **kw):
        return json.loads(self.ok("-o", "json", *args, **kw))


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-it-")
        self.tmp = self._tmp.name
        self.addCleanup(self._tmp.cleanup)


KAMAILIO_CFG = os.path.join(os.path.dirname(__file__), "../../deploy/local/kamailio-ipbx.cfg.in")


class Kamailio:
    """Kamailio as the iPBX: a digest-authenticating registrar on `ip`:`port` (TCP and UDP)."""

    def __init__(self, directory, ip, credentials, port=None, extra_args=(), tls_certs=None):
        self.dir = directory
        self.extra_args = list(extra_args)
        self.tls_certs = tls_certs  # {"cert":..., "key":...}: also listen for SIP over TLS
        self.tls_port = free_port() if tls_certs else None
        self.ip = ip
        self.port = port or free_port()
        self.credentials = credentials  # ICP username -> password
        self.ctl = os.path.join(directory, "kamailio.ctl")
        self.pid_file = os.path.join(directory, "kamailio.pid")
        self.log_path = os.path.join(directory, "kamailio.log")

    def start(self):
        with open(KAMAILIO_CFG) as f:
            cfg = f.read()
        creds = "\n".join(f'\t$sht(creds=>{u}) = "{p}";' for u, p in self.credentials.items())
        tls = ""
        if self.tls_certs:
            tls_cfg = os.path.join(self.dir, "tls.cfg")
            with open(tls_cfg, "w") as f:
                f.write(f"[server:default]\nmethod = TLSv1.2+\n"
                        f"certificate = {self.tls_certs['cert']}\n"
                        f"private_key = {self.tls_certs['key']}\nverify_certificate = no\n"
                        "require_certificate = no\n\n[client:default]\n"
                        "verify_certificate = no\nrequire_certificate = no\n")
            tls = (f'enable_tls=yes\nlisten=tls:{self.ip}:{self.tls_port}\n'
                   f'loadmodule "tls.so"\nmodparam("tls", "config", "{tls_cfg}")\n')
        for k, v in (("@IP@", self.ip), ("@PORT@", str(self.port)), ("@CTL@", self.ctl),
                     ("@RUNDIR@", self.dir), ("@CREDENTIALS@", creds), ("@TLS@", tls)):
            cfg = cfg.replace(k, v)
        path = os.path.join(self.dir, "kamailio.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        with open(self.log_path, "ab") as log:
            subprocess.run(["kamailio", "-f", path, "-P", self.pid_file, "-E", "-w", self.dir]
                           + self.extra_args,
                           stdout=log, stderr=log, check=True, timeout=30)
        wait_until("kamailio control socket", lambda: self.rpc("core.uptime") is not None)
        return self

    def rpc(self, *args):
        r = subprocess.run(["kamcmd", "-s", f"unix:{self.ctl}", *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout if r.returncode == 0 else None

    def registered(self):
        """ICP usernames with a location record."""
        out = self.rpc("ul.dump", "brief") or ""
        return set(re.findall(r"AoR: (\S+)", out))

    def stop(self):
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            wait_until("kamailio exit", lambda: not _alive(pid), timeout=20)
        except AssertionError:
            # Kamailio (the test's iPBX, not rwg) waits for every child on SIGTERM; a child
            # slow to end on a loaded machine must not leave the next test an iPBX on the
            # same ports. Killed, with what its processes were doing, for the log.
            ps = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:24,etime,args", "--ppid",
                                 str(pid), "-p", str(pid)], capture_output=True, text=True)
            print(f"\nwarning: kamailio {pid} did not exit within 20 s of SIGTERM; killed:\n"
                  f"{ps.stdout}", file=sys.stderr, flush=True)
            children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                      text=True).stdout.split()
            for p in [pid] + [int(c) for c in children]:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until("kamailio exit after SIGKILL", lambda: not _alive(pid), timeout=10)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def start_control(test, admin_password):
    """Redis, a secret key and control (TLS with the test CA) for `test` (a TempDirTest with
    `certs`), logged in as admin; stopped at the test's end. Sets test.redis, test.key,
    test.control and test.ctl."""
    os.mkdir(os.path.join(test.tmp, "redis"))
    test.redis = Redis(os.path.join(test.tmp, "redis")).start()
    test.addCleanup(test.redis.kill)
    test.key = os.path.join(test.tmp, "secret.key")
    with open(test.key, "w") as f:
        f.write(os.urandom(32).hex())
    pw = os.path.join(test.tmp, "admin-password")
    with open(pw, "w") as f:
        f.write(admin_password)
    test.control = Service("control", test.tmp, [
        "--redis-address", f"127.0.0.1:{test.redis.port}", "--secret-key-file", test.key,
        "--admin-password-file", pw, "--tls-cert-file", test.certs["cert"],
        "--tls-key-file", test.certs["key"]]).start()
    test.addCleanup(test.control.stop)
    test.ctl = Rwgctl(test.control.grpc_address, test.certs["ca"], os.path.join(test.tmp, "cli"))
    wait_until("control", lambda: test.ctl.run("health").stdout.strip() == "SERVING")
    test.ctl.ok("login", password=admin_password)


def assert_old_tls_refused(test, port, first_bytes):
    """Offers only TLS 1.0/1.1 to 127.0.0.1:`port` (security level 0, so that the client's own
    OpenSSL does not refuse first) and asserts that the server refuses; skips when this Python
    cannot offer TLS 1.1."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        test.skipTest("this Python cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with test.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            with ctx.wrap_socket(raw) as s:
                s.sendall(first_bytes)
                if not s.recv(10):
                    raise ConnectionResetError("closed")
