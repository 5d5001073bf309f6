"""A scripted SIP user agent for call-flow tests: a phone of the test's own over one TCP or TLS
connection (to rwg, or to the iPBX for an office phone).

It speaks enough of RFC 3261 to place, answer, refuse, cancel, hold and end calls, and does
what any phone does by itself whatever the order messages arrive in: it acknowledges final
answers to its INVITEs (a 2xx that crosses its CANCEL is acknowledged and ended with a BYE),
answers BYE, OPTIONS and NOTIFY with 200, a CANCEL with 200 and its INVITE with 487, and a
re-INVITE with its own SDP. The test script drives the rest and reads what happened.
"""
import os
import queue
import re
import select
import socket
import threading
import time

import sipclient


def header(msg, name):
    m = re.search(rf"(?im)^{name}\s*:\s*(.*)$", msg)
    return m.group(1).strip() if m else None


def headers(msg, name):
    return [v.strip() for v in re.findall(rf"(?im)^{name}\s*:\s*(.*)$", msg)]


def tag_of(value):
    m = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return m.group(1) if m else None


def uri_of(value):
    m = re.search(r"<([^>]*)>", value or "")
    return m.group(1) if m else (value or "").split(";")[0].strip()


def cseq_of(msg):
    n, method = header(msg, "CSeq").split()
    return int(n), method


def body_of(msg):
    return msg.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in msg else ""


def sdp(port, secure, direction="sendrecv"):
    lines = ["v=0", f"o=- {port} 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} {'RTP/SAVP' if secure else 'RTP/AVP'} 0", "a=rtpmap:0 PCMU/8000",
             f"a={direction}"]
    if secure:
        lines.append("a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
                     "inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0")
    return "\r\n".join(lines) + "\r\n"


class Call:
    def __init__(self, ua, call_id, local_tag, incoming):
        self.ua, self.call_id, self.local_tag, self.incoming = ua, call_id, local_tag, incoming
        self.remote_tag = None
        self.cseq = 1
        self.remote_cseq = 0
        self.route = []
        self.remote_target = None
        self.local_uri = self.remote_uri = None
        self.invite = None          # incoming: the INVITE; outgoing: our INVITE's text
        self.invite_branch = None
        self.invite_cseq = 1
        self.request_uri = None     # outgoing: the INVITE's Request-URI (its CANCEL's, ACK's)
        self.status = None          # final status of the INVITE
        self.cancelled = False      # we sent a CANCEL
        self.ended = False          # a BYE was sent or received, or the INVITE failed
        self.events = []            # what happened, in order: "180", "200", "BYE<", "CANCEL<"


class UA:
    def __init__(self, conn, user, domain, secure=True, auth=None):
        """`auth`: (user, password) for an iPBX's 407 (office phones)."""
        self.conn, self.user, self.domain, self.secure, self.auth = conn, user, domain, secure, auth
        self.transport = "TLS" if conn.tls else "TCP"
        self.calls = {}
        self.lock = threading.RLock()
        self.io_lock = threading.Lock()  # the connection's reads and writes, one at a time
        self.inbox = queue.Queue()      # new INVITEs for the script
        self.failures = []              # what went wrong inside the reader
        self.ignore_cancel = False      # answer a CANCEL 200 but never end the INVITE
        self.closed = False
        self.read_end = None            # why the reader stopped (when it did)
        self.seen = []                  # the first line of every message read, in order
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    # -- sending -----------------------------------------------------------------------------

    def _via(self, branch=None):
        h, p = self.conn.local
        return f"SIP/2.0/{self.transport} {h}:{p};branch={branch or 'z9hG4bK' + os.urandom(5).hex()}"

    def _contact(self):
        h, p = self.conn.local
        return f"<sip:{self.user}@{h}:{p};transport={self.transport.lower()}>"

    def send(self, text):
        # An SSL connection is not to be read and written by two threads at once (OpenSSL's
        # rule; Python's ssl module does not serialise them): the reader receives under the
        # same lock.
        with self.lock, self.io_lock:
            self.conn.send_raw(text)

    def request(self, call, method, body="", cseq=None, branch=None, extra=""):
        if cseq is None:
            call.cseq += 1
            cseq = call.cseq
        lines = [f"{method} {call.remote_target} SIP/2.0", f"Via: {self._via(branch)}",
                 f"From: {call.local_uri};tag={call.local_tag}",
                 f"To: {call.remote_uri}" + (f";tag={call.remote_tag}" if call.remote_tag else ""),
                 f"Call-ID: {call.call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70"]
        lines += [f"Route: {r}" for r in call.route]
        if method in ("INVITE", "UPDATE"):
            lines.append(f"Contact: {self._contact()}")
        text = "\r\n".join(lines) + "\r\n" + extra
        if body:
            text += "Content-Type: application/sdp\r\n"
        self.send(text + f"Content-Length: {len(body.encode())}\r\n\r\n{body}")

    def respond(self, req, code, phrase, tag=None, body="", contact=False):
        keep = [l for l in req.split("\r\n")[1:]
                if re.match(r"(?i)(via|v|from|f|call-id|i|cseq|record-route):", l)]
        to = header(req, "To") or header(req, "t")
        if tag and not tag_of(to):
            to += f";tag={tag}"
        lines = [f"SIP/2.0 {code} {phrase}"] + keep + [f"To: {to}"]
        if contact:
            lines.append(f"Contact: {self._contact()}")
        text = "\r\n".join(lines) + "\r\n"
        if body:
            text += "Content-Type: application/sdp\r\n"
        self.send(text + f"Content-Length: {len(body.encode())}\r\n\r\n{body}")

    # -- the script's verbs ------------------------------------------------------------------

    def dial(self, number, host):
        call = Call(self, os.urandom(8).hex(), os.urandom(4).hex(), False)
        call.local_uri = f"<sip:{self.user}@{self.domain}>"
        call.remote_uri = f"<sip:{number}@{host}>"
        call.remote_target = call.request_uri = f"sip:{number}@{host}"
        call.offer = sdp(40000 + int.from_bytes(os.urandom(1), "big") * 2, self.secure)
        with self.lock:
            self.calls[call.call_id] = call
        self._send_invite(call)
        return call

    def _send_invite(self, call, auth=None):
        call.invite_branch = "z9hG4bK" + os.urandom(5).hex()
        self.request(call, "INVITE", call.offer, cseq=call.cseq, branch=call.invite_branch,
                     extra=(f"Proxy-Authorization: {auth}\r\n" if auth else "")
                     + "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n")

    def cancel(self, call):
        call.cancelled = True
        lines = [f"CANCEL {call.request_uri} SIP/2.0",
                 f"Via: {self._via(call.invite_branch)}",
                 f"From: {call.local_uri};tag={call.local_tag}", f"To: {call.remote_uri}",
                 f"Call-ID: {call.call_id}", f"CSeq: {call.cseq} CANCEL", "Max-Forwards: 70"]
        self.send("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")

    def answer(self, call, code=200, phrase="OK"):
        """Answers an incoming call's INVITE (a 2xx with SDP, or a refusal)."""
        with self.lock:
            if call.status is not None:
                return False  # answered already (487 to a CANCEL)
            call.status = code
        body = sdp(42000 + int.from_bytes(os.urandom(1), "big") * 2, self.secure) \
            if 200 <= code < 300 or code == 183 else ""
        self.respond(call.invite, code, phrase, tag=call.local_tag, body=body,
                     contact=code < 300)
        if code >= 300:
            call.ended = True
        return True

    def ring(self, call):
        self.respond(call.invite, 180, "Ringing", tag=call.local_tag, contact=True)

    def bye(self, call):
        call.ended = True
        self.request(call, "BYE")

    def reinvite(self, call, direction):
        self.request(call, "INVITE", sdp(44000, self.secure, direction))

    def next_call(self, timeout=10):
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.user}: no INVITE came in {timeout}s")

    def wait(self, what, fn, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failures:
                raise AssertionError(f"{self.user}: {self.failures}")
            if fn():
                return
            time.sleep(0.02)
        reader = "reading" if self.thread.is_alive() else f"reader ended: {self.read_end}"
        raise AssertionError(f"{self.user}: timed out waiting for {what} ({reader}; "
                             f"read: {self.seen[-8:]})")

    def close(self):
        self.closed = True
        self.conn.close()

    # -- reading -----------------------------------------------------------------------------

    def _messages(self):
        """Complete messages as they arrive; a read that times out mid-message keeps what it
        had (the connection's buffer holds every byte until a whole message is there)."""
        buf = self.conn.buf
        self.conn.buf = b""
        self.conn.sock.settimeout(0.5)
        while not self.closed:
            while True:
                buf = buf.lstrip(b"\r\n")
                if b"\r\n\r\n" not in buf:
                    break
                head, rest = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^(content-length|l)\s*:\s*(\d+)", head)
                n = int(m.group(2)) if m else 0
                if len(rest) < n:
                    break
                buf = rest[n:]
                yield (head + b"\r\n\r\n" + rest[:n]).decode(errors="replace")
            try:
                # Waits for bytes without the lock, then reads under it (sends meanwhile).
                sock = self.conn.sock
                if not (self.conn.tls and sock.pending()) and \
                        not select.select([sock], [], [], 0.5)[0]:
                    continue
                with self.io_lock:
                    chunk = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except (OSError, ValueError) as e:
                self.read_end = f"{type(e).__name__}: {e}"
                return
            if not chunk:
                self.read_end = "connection closed by the peer"
                return
            buf += chunk

    def _read(self):
        for msg in self._messages():
            first = msg.split("\r\n", 1)[0]
            self.seen.append(f"{first} ({header(msg, 'CSeq')})")
            try:
                if msg.startswith("SIP/2.0 "):
                    self._on_response(msg)
                else:
                    self._on_request(msg)
            except Exception as e:  # pylint: disable=broad-except
                self.failures.append(f"{type(e).__name__}: {e} on\n{msg}")

    def _on_response(self, msg):
        code = sipclient.status(msg)
        n, method = cseq_of(msg)
        call = self.calls.get(header(msg, "Call-ID") or header(msg, "i"))
        if call is None:
            return
        call.events.append(f"{code} {method}")
        if method != "INVITE":
            return
        if code < 200:
            return
        reinvite = n != call.invite_cseq
        if code >= 300:
            if code == 407 and self.auth and not reinvite and call.status is None:
                self._ack_failure(call, msg)
                ch = sipclient.parse_challenges(msg, "proxy-authenticate")[0]
                call.cseq += 1
                call.invite_cseq = call.cseq
                self._send_invite(call, sipclient.authorization(
                    ch, self.auth[0], self.auth[1], "INVITE", call.request_uri))
                return
            if not reinvite:
                call.status = code
                call.ended = True
            self._ack_failure(call, msg)
            return
        # 2xx: the dialog; ACKed end to end, ended at once when we had cancelled.
        call.remote_tag = tag_of(header(msg, "To") or header(msg, "t"))
        contact = header(msg, "Contact") or header(msg, "m")
        if contact:
            call.remote_target = uri_of(contact)
        if not reinvite:
            call.route = list(reversed([r.strip() for h in headers(msg, "Record-Route")
                                        for r in h.split(",")]))
            call.status = code
        self.request(call, "ACK", cseq=n)
        if call.cancelled and not call.ended and not reinvite:
            self.bye(call)

    def _ack_failure(self, call, msg):
        lines = [f"ACK {call.request_uri} SIP/2.0", f"Via: {self._via(call.invite_branch)}",
                 f"From: {call.local_uri};tag={call.local_tag}",
                 f"To: {header(msg, 'To') or header(msg, 't')}", f"Call-ID: {call.call_id}",
                 f"CSeq: {cseq_of(msg)[0]} ACK", "Max-Forwards: 70"]
        self.send("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")

    def _on_request(self, msg):
        method = msg.split(" ", 1)[0]
        call_id = header(msg, "Call-ID") or header(msg, "i")
        to_tag = tag_of(header(msg, "To") or header(msg, "t"))
        call = self.calls.get(call_id)
        if method == "INVITE" and to_tag is None and call is None:
            call = Call(self, call_id, os.urandom(4).hex(), True)
            call.invite = msg
            frm = header(msg, "From") or header(msg, "f")
            call.remote_tag = tag_of(frm)
            call.remote_uri = frm.split(";tag=")[0]
            call.local_uri = (header(msg, "To") or header(msg, "t"))
            call.remote_target = uri_of(header(msg, "Contact") or header(msg, "m"))
            call.route = [r.strip() for h in headers(msg, "Record-Route") for r in h.split(",")]
            call.remote_cseq = cseq_of(msg)[0]
            with self.lock:
                self.calls[call_id] = call
            self.respond(msg, 100, "Trying")
            self.inbox.put(call)
            return
        if call is None:
            if method != "ACK":
                self.respond(msg, 481, "Call/Transaction Does Not Exist")
            return
        call.events.append(f"{method}<")
        if method == "ACK":
            return
        if method == "CANCEL":
            self.respond(msg, 200, "OK")
            if self.ignore_cancel:
                return
            with self.lock:
                unanswered = call.status is None
                if unanswered:
                    call.status = 487
            if unanswered:
                self.respond(call.invite, 487, "Request Terminated", tag=call.local_tag)
                call.ended = True
            return
        if method == "BYE":
            call.ended = True
            self.respond(msg, 200, "OK")
            return
        if method == "INVITE":  # a re-INVITE: answered in the offer's terms
            offered = body_of(msg)
            direction = ("recvonly" if "a=sendonly" in offered
                         else "inactive" if "a=inactive" in offered else "sendrecv")
            call.events.append(f"reinvite:{direction}")
            self.respond(msg, 200, "OK", body=sdp(46000, self.secure, direction), contact=True)
            return
        self.respond(msg, 200, "OK")
