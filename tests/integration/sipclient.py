"""A small SIP client for tests: sends requests over TCP or TLS and reads responses.

Used to check rwg's answers byte by byte (e.g. that an unknown user and a wrong password get
the same answer); the real phones (sipp, baresip) are used for the flows.
"""
import hashlib
import os
import re
import socket
import ssl


def _h(alg, s):
    return hashlib.new("sha256" if alg.upper() == "SHA-256" else "md5", s.encode()).hexdigest()


def parse_challenges(response, header="www-authenticate"):
    """All WWW-Authenticate (or `header`, e.g. proxy-authenticate) values of a response as
    dicts."""
    out = []
    for line in response.split("\r\n"):
        if line.lower().startswith(header + ":"):
            value = line.split(":", 1)[1].strip()
            assert value.lower().startswith("digest")
            out.append(dict((k.lower(), v.strip('"')) for k, v in
                            re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value[6:])))
    return out


def authorization(ch, user, password, method, uri, nc=1, cnonce="0a4f113b"):
    alg = ch.get("algorithm", "MD5")
    ha1 = _h(alg, f"{user}:{ch['realm']}:{password}")
    ha2 = _h(alg, f"{method}:{uri}")
    ncs = f"{nc:08x}"
    resp = _h(alg, f"{ha1}:{ch['nonce']}:{ncs}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={alg}, qop=auth, nc={ncs}, '
            f'cnonce="{cnonce}"')


class SipConnection:
    def __init__(self, host, port, tls=False, ca=None, timeout=10, source=None, rcvbuf=None):
        if rcvbuf is None:
            raw = socket.create_connection((host, port), timeout=timeout,
                                           source_address=(source, 0) if source else None)
        else:  # a small receive window: a phone that reads slowly
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            raw.settimeout(timeout)
            raw.connect((host, port))
        if tls:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.check_hostname = False if ca is None else ctx.check_hostname
            if ca is None:
                ctx.verify_mode = ssl.CERT_NONE
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.tls = tls
        self.local = raw.getsockname()
        self.buf = b""
        self.cseq = 0
        self.call_id = os.urandom(8).hex()
        self.tag = os.urandom(4).hex()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def read_raw(self, timeout=2.0):
        """Whatever bytes arrive within `timeout` seconds (b"" if none)."""
        if self.buf:
            out, self.buf = self.buf, b""
            return out
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return b""
        finally:
            self.sock.settimeout(10)

    def read_message(self):
        """One SIP message (headers + body) as text, or None when the connection closed."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
            self.buf = self.buf.lstrip(b"\r\n") if self.buf.strip(b"\r\n") == b"" else self.buf
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"(?im)^(content-length|l)\s*:\s*(\d+)", head)
        n = int(m.group(2)) if m else 0
        while len(rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            rest += chunk
        self.buf = rest[n:]
        return (head + b"\r\n\r\n" + rest[:n]).decode(errors="replace")

    def build_register(self, user, domain, expires=600, auth=None, contact_user=None,
                       to_user=None, contacts=None):
        self.cseq += 1
        transport = "TLS" if self.tls else "TCP"
        host, port = self.local[0], self.local[1]
        if contacts is None:
            contacts = [f"<sip:{contact_user or user}@{host}:{port};transport={transport.lower()}>"]
        lines = [
            f"REGISTER sip:{domain} SIP/2.0",
            f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport",
            f"From: <sip:{user}@{domain}>;tag={self.tag}",
            f"To: <sip:{to_user or user}@{domain}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
        ] + [f"Contact: {c}" for c in contacts] + [f"Expires: {expires}"]
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines)

    def register(self, user, domain, **kw):
        """Sends a REGISTER (see build_register) and returns the response."""
        self.send_raw(self.build_register(user, domain, **kw))
        return self.read_message()

    def register_with_auth(self, user, password, domain, expires=600, **kw):
        """REGISTER, answer the 401, return the final response text."""
        first = self.register(user, domain, expires=expires, **kw)
        if not first.startswith("SIP/2.0 401"):
            return first
        ch = [c for c in parse_challenges(first) if c.get("algorithm", "MD5").upper() == "MD5"][0]
        return self.register(user, domain, expires=expires,
                             auth=authorization(ch, user, password, "REGISTER", f"sip:{domain}"),
                             **kw)


def status(msg):
    return int(msg.split(" ", 2)[1]) if msg else None


def strip_per_request(msg):
    """The message without the headers that differ per request (Via, From, To, Call-ID, CSeq)."""
    keep = []
    for line in msg.split("\r\n"):
        name = line.split(":", 1)[0].strip().lower()
        if name in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"):
            continue
        keep.append(line)
    return "\r\n".join(keep)
