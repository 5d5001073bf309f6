#!/usr/bin/python3
"""A stand-in for the iPBX's web applications (User Portal, Web Client) behind rwg's ott.

Python's standard library only. A threaded HTTP/1.1 server (keep-alive) on 127.0.0.1, port 0
unless --port, HTTPS with --cert/--key, plain HTTP without; prints "PORT <n>" on stdout once
listening, then serves until killed or until its stdin closes (the test that started it is
gone, however it ended).

Every endpoint is chosen by the path's last segment, whatever comes before it, so that the
same endpoints can be reached under a user, an admin or a common path:

  .../page            an HTML page with a form (POST to "form")
  .../form            POST: the form fields it got, as JSON
  .../headers         the request as the application saw it, as JSON: method, target, the
                      headers in order, the peer, the connection's serial number and how
                      many requests that connection carried
  .../ws              WebSocket echo (RFC 6455): text and binary messages come back as they
                      were sent, ping gets pong, close gets close
  .../big?size=N      N bytes (default 64 MiB) of deterministic data, Content-Length, their
                      SHA-256 in the header X-Content-Sha256
  .../slow?seconds=N  answers after N seconds (default 5)
  .../cut?size=N&after=M&stall=S
                      promises N bytes (Content-Length), sends the first M of .../big's data,
                      waits S seconds (default 0) and closes the connection
  .../upload          POST/PUT: the body's length and SHA-256 and whether it came chunked, as
                      JSON
  .../echo            POST/PUT: the body back, chunked, a chunk per piece read
  .../setcookie       sets an application cookie "app-session"
  anything else       200, the request as .../headers gives it, with "endpoint": "other"
"""

import argparse
import base64
import gzip
import hashlib
import http.server
import itertools
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
BLOCK = 1 << 20

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Stand-in User Portal</title></head>
<body style="font-family: sans-serif; background: #f4f7fb">
<h1 id="heading">MiVoice 5000 User Portal (stand-in)</h1>
<p id="where">path {path}</p>
<form id="settings" method="post" action="form">
  <label>Forward to <input type="text" name="forward" value="2001"></label>
  <label>Note <input type="text" name="note" value=""></label>
  <button type="submit" id="save">Save</button>
</form>
</body></html>
"""

_serial = itertools.count(1)


def block(index):
    """Block `index` of the download: a fixed pattern with the index in its first 8 bytes."""
    return struct.pack(">Q", index) + _PATTERN[8:]


_PATTERN = hashlib.sha256(b"rwg ott stand-in").digest() * (BLOCK // 32)
_sums = {}
_sums_lock = threading.Lock()


def download_sha256(size):
    with _sums_lock:
        if size not in _sums:
            h = hashlib.sha256()
            for i in range(size // BLOCK):
                h.update(block(i))
            if size % BLOCK:
                h.update(block(size // BLOCK)[:size % BLOCK])
            _sums[size] = h.hexdigest()
        return _sums[size]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StandInPortal/1"

    def setup(self):
        super().setup()
        self.serial = next(_serial)
        self.requests_seen = 0

    def log_message(self, fmt, *args):  # quiet: the test reads what matters from answers
        pass

    # -- helpers
    def endpoint(self):
        path = urllib.parse.urlsplit(self.path).path
        return path.rsplit("/", 1)[-1], urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)

    def send_json(self, obj, status=200, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, on_piece=None):
        """The request body, Content-Length or chunked; returns (bytes, chunked)."""
        te = self.headers.get("Transfer-Encoding", "")
        out = bytearray()
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("body ended early")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                piece = self.rfile.read(size)
                self.rfile.readline(3)
                out += piece
                if on_piece:
                    on_piece(piece)
            return bytes(out), True
        n = int(self.headers.get("Content-Length", "0") or 0)
        while len(out) < n:
            piece = self.rfile.read(min(65536, n - len(out)))
            if not piece:
                raise ConnectionError("body ended early")
            out += piece
            if on_piece:
                on_piece(piece)
        return bytes(out), False

    def request_info(self, body=b""):
        return {
            "method": self.command,
            "target": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "peer": self.client_address[0],
            "connection": self.serial,
            "requests_on_connection": self.requests_seen,
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "body_length": len(body),
        }

    # -- methods
    def handle_one_request(self):
        self.requests_seen += 1
        super().handle_one_request()

    def do_GET(self):
        name, query = self.endpoint()
        if name == "page":
            body = PAGE.format(path=self.path.split("?", 1)[0].replace("<", "&lt;")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif name == "headers":
            self.send_json(self.request_info())
        elif name == "ws":
            self.websocket()
        elif name == "big":
            self.big(int(query.get("size", [64 << 20])[0]))
        elif name == "cut":
            size, after = int(query["size"][0]), int(query["after"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent, i = 0, 0
            while sent < after:
                b = block(i)[:after - sent]
                self.wfile.write(b)
                sent += len(b)
                i += 1
            self.wfile.flush()
            time.sleep(float(query.get("stall", ["0"])[0]))
            self.close_connection = True
        elif name == "codings":
            # A transfer coding besides chunked, on two Transfer-Encoding lines.
            body = gzip.compress(b"hello through two codings")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "gzip")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        elif name == "trickle":
            # Two pieces with a pause between them: chunked, or as HTTP/1.0 does, until the
            # close (no length).
            pause = float(query.get("pause", ["3"])[0])
            chunked = query.get("framing", ["chunked"])[0] == "chunked"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, piece in enumerate((b"piece-1\n", b"piece-2\n")):
                if i > 0:
                    time.sleep(pause)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.close_connection = True
        elif name == "slow":
            time.sleep(float(query.get("seconds", ["5"])[0]))
            self.send_json({"slept": True})
        elif name == "setcookie":
            self.send_json({"set": True}, extra=[("Set-Cookie", "app-session=abc123; Path=/")])
        else:
            self.send_json({**self.request_info(), "endpoint": "other"})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        name, _ = self.endpoint()
        if name == "form":
            body, _ = self.read_body()
            fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            self.send_json({"fields": fields, "content_type": self.headers.get("Content-Type"),
                            "request": self.request_info(body)})
        elif name == "headers":
            body, _ = self.read_body()
            self.send_json(self.request_info(body))
        elif name == "upload":
            body, chunked = self.read_body()
            self.send_json({"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                            "chunked": chunked})
        elif name == "echo":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def piece(p):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                self.wfile.flush()
            self.read_body(piece)
            self.wfile.write(b"0\r\n\r\n")
        else:
            body, _ = self.read_body()
            self.send_json({**self.request_info(body), "endpoint": "other"})

    do_PUT = do_POST

    # -- endpoints
    def big(self, size):
        digest = download_sha256(size)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Content-Sha256", digest)
        self.end_headers()
        sent = 0
        i = 0
        try:
            while sent < size:
                b = block(i)[:size - sent]
                self.wfile.write(b)
                sent += len(b)
                i += 1
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade", "").lower() != "websocket" or not key
                or "upgrade" not in self.headers.get("Connection", "").lower()):
            self.send_json({"error": "not a websocket handshake"}, status=400)
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            while True:
                frame = read_frame(self.rfile)
                if frame is None:
                    return
                opcode, payload = frame
                if opcode == 0x8:
                    self.wfile.write(make_frame(0x8, payload[:2], mask=False))
                    self.wfile.flush()
                    return
                if opcode == 0x9:
                    self.wfile.write(make_frame(0xA, payload, mask=False))
                elif opcode in (0x1, 0x2):
                    self.wfile.write(make_frame(opcode, payload, mask=False))
                self.wfile.flush()
        except (ConnectionError, ssl.SSLError, OSError):
            return


def read_exact(f, n):
    data = b""
    while len(data) < n:
        piece = f.read(n - len(data))
        if not piece:
            return None
        data += piece
    return data


def read_frame(f):
    """One WebSocket frame (FIN frames only; fragments are joined): (opcode, payload) or None
    when the connection ends."""
    payload = b""
    first_opcode = None
    while True:
        head = read_exact(f, 2)
        if head is None:
            return None
        fin, opcode = head[0] & 0x80, head[0] & 0x0F
        masked, n = head[1] & 0x80, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", read_exact(f, 2) or b"\0\0")[0]
        elif n == 127:
            n = struct.unpack(">Q", read_exact(f, 8) or b"\0" * 8)[0]
        mask = read_exact(f, 4) if masked else b"\0\0\0\0"
        data = read_exact(f, n) if n else b""
        if mask is None or data is None:
            return None
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if masked else data
        if opcode >= 0x8:  # control frames may come between fragments
            return opcode, data
        if first_opcode is None:
            first_opcode = opcode
        payload += data
        if fin:
            return first_opcode, payload


def make_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, tls_context):
        self.tls_context = tls_context
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        # A peer that goes away mid-request (the tests do it on purpose) is no error here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, OSError)):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request, client_address):
        # The TLS handshake in the connection's own thread: a client that stalls it holds up
        # only itself.
        if self.tls_context:
            try:
                request.settimeout(30)
                request = self.tls_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                request.close()
                return
            try:
                super().finish_request(request, client_address)
            finally:
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                request.close()
            return
        super().finish_request(request, client_address)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", help="PEM certificate chain: HTTPS")
    p.add_argument("--key", help="PEM private key")
    a = p.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    server = Server(("127.0.0.1", a.port), ctx)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)
    threading.Thread(target=watch_stdin, daemon=True).start()
    print("PORT %d" % server.server_address[1], flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
