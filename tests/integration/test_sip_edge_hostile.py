"""Integration: nothing a phone sends crashes the SIP edge through what it stores, logs or counts.

Bytes that are not UTF-8 and over-long values in every header a phone controls (the records
in Redis are JSON, the logs one line of UTF-8 per event), password guessing with such user
names (the ban record), and made-up method names (the metrics' labels).
"""
import os
import re
import socket
import ssl
import time
import unittest

import sipclient
import test_calls
import test_sip_edge as base
from test_sip_edge import DEVICES, DOMAIN

# Each alone, and together: bytes that are not UTF-8 (a lone 0xff, Latin-1), a valid UTF-8
# name, and line separators that some log viewers break lines on.
NOT_UTF8 = b"\xff\xfeJos\xe9 M\xfcller\xc0\xaf\xed\xa0\x80"
UTF8 = "Jos\u00e9 \u20ac \u2028".encode()
LONG = 60 * 1024  # a phone's message may be at most 64 KiB


def message(conn, method, uri, headers, body=b""):
    """A request as bytes: `headers` are (name, value) pairs, values bytes or str."""
    lines = [b"%s %s SIP/2.0" % (method.encode(), uri if isinstance(uri, bytes) else uri.encode())]
    for name, value in headers:
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    lines += [b"Content-Length: %d" % len(body), b"", b""]
    return b"\r\n".join(lines) + body


def register_headers(conn, user="1001", **override):
    """The headers of a REGISTER from `conn`; `override` replaces some (keys in snake case)."""
    h, p = conn.local
    conn.cseq += 1
    transport = "TLS" if conn.tls else "TCP"
    values = {
        "via": f"SIP/2.0/{transport} {h}:{p};branch=z9hG4bK{os.urandom(6).hex()};rport",
        "from": f"<sip:{user}@{DOMAIN}>;tag={conn.tag}",
        "to": f"<sip:{user}@{DOMAIN}>",
        "call_id": conn.call_id,
        "cseq": f"{conn.cseq} REGISTER",
        "max_forwards": "70",
        "contact": f"<sip:{user}@{h}:{p};transport={transport.lower()}>",
        "expires": "600",
    }
    values.update(override)
    return [(k.replace("_", "-").title().replace("Id", "ID"), v) for k, v in values.items()
            if v is not None]


def exchange(conn, data):
    """Sends `data`, returns the answer (None when the connection closed)."""
    conn.send_raw(data)
    return conn.read_message()


def digest_for(challenge_response, user, password, uri=f"sip:{DOMAIN}"):
    ch = [c for c in sipclient.parse_challenges(challenge_response)
          if c.get("algorithm", "MD5").upper() == "MD5"][0]
    return sipclient.authorization(ch, user, password, "REGISTER", uri)


class HostileInputFixture(base.EdgeFixture):
    def options_answered(self):
        """A fresh phone's OPTIONS (no user) gets 200: the edge is alive and serving."""
        conn = self.phone(tls=False)
        h, p = conn.local
        r = exchange(conn, message(conn, "OPTIONS", f"sip:{DOMAIN}", [
            ("Via", f"SIP/2.0/TCP {h}:{p};branch=z9hG4bK{os.urandom(6).hex()};rport"),
            ("From", f"<sip:probe@{DOMAIN}>;tag=1"), ("To", f"<sip:{DOMAIN}>"),
            ("Call-ID", os.urandom(8).hex()), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70")]))
        return sipclient.status(r) == 200

    def assert_alive(self):
        self.assertTrue(self.edge.alive(), self.edge.read_log()[-3000:])
        self.assertTrue(self.options_answered())

    def assert_log_lines_sane(self):
        """Every line of the edge's log is one logfmt record of valid UTF-8, of bounded size."""
        with open(self.edge.log_path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")  # raises on anything that is not UTF-8
        for line in text.split("\n"):
            self.assertLess(len(line), 16 * 1024, line[:300])
            self.assertNotIn("\u2028", line)
            self.assertNotIn("\r", line)
            if line:  # sofia-sip's own diagnostics are records too (msg=sofia-sip)
                self.assertTrue(line.startswith("ts="), line[:300])


class HostileUsernameBanTest(HostileInputFixture):
    """The password-guessing ban of a user name that is not UTF-8 (it once crashed the edge:
    the ban record could not be serialised, on the SIP thread)."""

    def test_six_packets_over_tcp(self):
        conn = self.phone(tls=False)
        first = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}", register_headers(conn)))
        self.assertEqual(sipclient.status(first), 401, first)
        ch = sipclient.parse_challenges(first)[0]
        auth = (b'Digest username="\xff", realm="%s", nonce="%s", uri="sip:x", response="0"'
                % (ch["realm"].encode(), ch["nonce"].encode()))
        for i in range(5):  # --auth-failures 5: the fifth imposes the ban
            r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                       register_headers(conn) + [("Authorization", auth)]))
            self.assertEqual(sipclient.status(r), 403, f"try {i + 1}: {r}")
        self.assert_alive()
        bans = self.ctl.json("ban", "list")["bans"]
        self.assertEqual(len(bans), 1, bans)
        self.assertRegex(bans[0]["id"], r"^auth:127\.0\.0\.1\|\\xff#[0-9a-f]{16}$")
        self.assertEqual(bans[0]["kind"], "auth")
        # The ban holds: the same user name is refused, other users are not.
        r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                   register_headers(conn) + [("Authorization", auth)]))
        self.assertEqual(sipclient.status(r), 403, r)
        _, r = self.register("1001", conn=self.phone(tls=False))
        self.assertEqual(sipclient.status(r), 200, r)
        # Lifted by its id, as listed.
        self.assertIn("lifted", self.ctl.ok("ban", "remove", bans[0]["id"]))
        self.assertEqual(self.ctl.json("ban", "list")["bans"], [])
        self.assertIn("msg=ban id=\"auth:127.0.0.1|\\\\xff#", self.edge.read_log())
        self.assert_log_lines_sane()

    def test_long_user_names_make_short_bans(self):
        conn = self.phone(tls=False)
        first = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}", register_headers(conn)))
        ch = sipclient.parse_challenges(first)[0]
        user = b"u" * LONG
        auth = (b'Digest username="%s", realm="%s", nonce="%s", uri="sip:x", response="0"'
                % (user, ch["realm"].encode(), ch["nonce"].encode()))
        for i in range(5):
            r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                       register_headers(conn) + [("Authorization", auth)]))
            self.assertEqual(sipclient.status(r), 403, f"try {i + 1}: {r}")
        self.assert_alive()
        bans = self.ctl.json("ban", "list")["bans"]
        self.assertEqual([b["id"] for b in bans], [f"auth:127.0.0.1|{'u' * 32}#" + bans[0]["id"][-16:]])
        keys = self.redis.cmd("KEYS", "rwg:ban:*")
        self.assertLess(len(keys), 200, keys)
        record = self.redis.cmd("GET", keys.split(b"\r\n")[2].decode())
        self.assertLess(len(record), 1000, record[:300])
        self.assert_log_lines_sane()


class HostilePhoneTest(HostileInputFixture):
    """Every header a phone controls, with bytes that are not UTF-8 or 60 KB long."""
    edge_args = ["--pike-requests", "100000"]

    def hostile_values(self):
        for what, value in (("not UTF-8", NOT_UTF8), ("UTF-8", UTF8),
                            ("60 KB", b"x" * LONG), ("60 KB not UTF-8", b"\xff" * LONG)):
            yield what, value

    def test_hostile_headers_get_sane_answers(self):
        for tls in (False, True):
            for what, v in self.hostile_values():
                conn = self.phone(tls=tls)
                h, p = conn.local
                cases = {
                    "From display name": {"from": b'"' + v + b'" <sip:1001@rwg.test>;tag=1'},
                    "Call-ID": {"call_id": v + b"@host"},
                    "Contact": {"contact": b'"%s" <sip:%s@%s:%d>'
                                % (v[:LONG // 2], v[:LONG // 2], h.encode(), p)},
                    "User-Agent": {"user_agent": v},
                    "To": {"to": b'"' + v + b'" <sip:1001@rwg.test>'},
                    "Via branch": {"via": b"SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport"
                                   % (b"TLS" if tls else b"TCP", h.encode(), p, v)},
                }
                for header, override in cases.items():
                    with self.subTest(tls=tls, value=what, header=header):
                        r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                                   register_headers(conn, **override)))
                        if r is None:  # the edge may close a connection it cannot parse
                            conn = self.phone(tls=tls)
                            h, p = conn.local
                        else:
                            self.assertIn(sipclient.status(r), (400, 401), r[:300])
                        self.assertTrue(self.edge.alive(), self.edge.read_log()[-3000:])
                # The Authorization username itself.
                with self.subTest(tls=tls, value=what, header="Authorization username"):
                    conn = self.phone(tls=tls)
                    first = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                                   register_headers(conn)))
                    ch = sipclient.parse_challenges(first)[0]
                    auth = (b'Digest username="%s", realm="%s", nonce="%s", uri="sip:x", '
                            b'response="0"' % (v[:LONG - 2000], ch["realm"].encode(),
                                               ch["nonce"].encode()))
                    r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}",
                                               register_headers(conn) + [("Authorization", auth)]))
                    self.assertIn(sipclient.status(r), (400, 403), r and r[:300])
        self.assert_alive()
        self.assert_log_lines_sane()

    def test_registered_phone_with_hostile_values_is_stored_and_listed(self):
        """A real device whose REGISTER carries such values everywhere: the binding is written
        to Redis (it once could not be: the SIP thread threw), and control lists it."""
        for user, tls in (("1001", False), ("1002", True)):
            conn = self.phone(tls=tls)
            h, p = conn.local
            t = "tls" if tls else "tcp"
            hostile = {
                "from": b'"' + NOT_UTF8 + b'" <sip:%s@%s>;tag=1' % (user.encode(), DOMAIN.encode()),
                "call_id": NOT_UTF8 + b"@" + b"c" * 1000,
                "contact": (b'"' + NOT_UTF8 + b'" <sip:%s%s@%s:%d;transport=%s;x=%s>'
                            % (user.encode(), NOT_UTF8, h.encode(), p, t.encode(), b"y" * 30000)),
                "user_agent": NOT_UTF8 + b" " + b"z" * 20000,
            }
            headers = register_headers(conn, user=user, **hostile)
            first = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}", headers))
            self.assertEqual(sipclient.status(first), 401, first and first[:300])
            headers = register_headers(conn, user=user, **hostile)
            r = exchange(conn, message(conn, "REGISTER", f"sip:{DOMAIN}", headers + [
                ("Authorization", digest_for(first, user, DEVICES[user][0]))]))
            self.assertEqual(sipclient.status(r), 200, r and r[:300])
            self.assertIsNotNone(self.binding(user))
        regs = self.ctl.json("registration", "list")["registrations"]
        self.assertEqual(sorted(r["set_username"] for r in regs), ["1001", "1002"])
        # The iPBX's requests still reach the phones, and the edge keeps serving.
        self.assert_alive()
        self.assert_log_lines_sane()


class UniqueMethodsTest(HostileInputFixture):
    """Made-up method names do not grow the metrics: they are counted as "other"."""
    edge_args = ["--pike-requests", "100000"]

    def series(self, name):
        return [l for l in self.metrics().splitlines() if l.startswith(name + "{")]

    def test_3000_unique_methods(self):
        conn = self.phone(tls=False)
        h, p = conn.local
        n, batch = 3000, 100
        for start in range(0, n, batch):
            data = b"".join(message(conn, f"M{i:05d}X", f"sip:{DOMAIN}", [
                ("Via", f"SIP/2.0/TCP {h}:{p};branch=z9hG4bK{i:x}m;rport"),
                ("From", f"<sip:probe@{DOMAIN}>;tag={i}"), ("To", f"<sip:{DOMAIN}>"),
                ("Call-ID", f"m{i}"), ("CSeq", f"1 M{i:05d}X"), ("Max-Forwards", "70")])
                for i in range(start, start + batch))
            conn.send_raw(data)
            for i in range(batch):
                r = conn.read_message()
                self.assertEqual(sipclient.status(r), 501, r)
        self.assert_alive()
        requests = self.series("rwg_sip_edge_requests_total")
        responses = self.series("rwg_sip_edge_responses_total")
        self.assertLessEqual(len(requests), 15 * 2, requests[:20])
        self.assertLessEqual(len(responses), 60, responses[:20])
        self.assertTrue(any('method="other"' in l and l.endswith(" 3000") for l in requests),
                        requests)
        self.assertTrue(any('method="other"' in l and 'code="501"' in l for l in responses),
                        responses)
        methods = set(re.findall(r'method="([^"]*)"', "\n".join(requests + responses)))
        self.assertLessEqual(methods, {"ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE",
                                       "NOTIFY", "OPTIONS", "PRACK", "PUBLISH", "REFER",
                                       "REGISTER", "SUBSCRIBE", "UPDATE", "other"})


class HostileCallTest(test_calls.RelayFixture):
    """A call whose Call-ID and From display name are not UTF-8: the call's record is written
    to Redis when the INVITE leaves (it once could not be: the SIP thread threw)."""

    def test_call_record_with_hostile_values(self):
        public = test_calls.PUBLIC
        conn = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(conn.close)
        r = conn.register_with_auth("1001", DEVICES["1001"][0], public)
        self.assertEqual(sipclient.status(r), 200, r)
        h, p = conn.local
        sdp = test_calls.offer().encode()
        uri = f"sip:{test_calls.OFFICE_USER}@{public}"
        call_id = NOT_UTF8 + b"@" + b"c" * 2000
        common = [("Via", f"SIP/2.0/TLS {h}:{p};branch=z9hG4bKhostile1"),
                  ("From", b'"' + NOT_UTF8 + b'" <sip:1001@' + public.encode() + b">;tag=h1"),
                  ("To", f"<{uri}>"), ("Call-ID", call_id)]
        conn.send_raw(message(conn, "INVITE", uri, common + [
            ("CSeq", "1 INVITE"), ("Max-Forwards", "70"),
            ("Contact", f"<sip:1001@{h}:{p};transport=tls>"),
            ("User-Agent", NOT_UTF8), ("Content-Type", "application/sdp")], sdp))
        r = test_calls.final_response(conn)
        # Nobody is registered as the office user here: Kamailio answers 404.
        self.assertEqual(sipclient.status(r), 404, r)
        to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
        conn.send_raw(message(conn, "ACK", uri, common[:2] + [("To", to), ("Call-ID", call_id),
                                                               ("CSeq", "1 ACK"),
                                                               ("Max-Forwards", "70")]))
        self.assert_alive_and_sane()
        self.assertIn("msg=call ", self.edge.read_log())

    def assert_alive_and_sane(self):
        self.assertTrue(self.edge.alive(), self.edge.read_log()[-3000:])
        conn = sipclient.SipConnection("127.0.0.1", self.tcp_port)
        self.addCleanup(conn.close)
        _, r = self.register("1002", conn=conn)
        self.assertEqual(sipclient.status(r), 200, r)


class ConnectionLimitTest(HostileInputFixture):
    """Idle connections from one address beyond --max-connections-per-source are closed at
    once; a phone at another address keeps registering meanwhile."""
    limit = 8
    edge_args = ["--max-connections-per-source", str(limit), "--pike-requests", "100000"]

    def idle(self, tls, n):
        """Opens `n` idle connections from 127.0.0.1; returns (kept, closed by the edge)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        opened = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", self.tls_port if tls else self.tcp_port),
                                         timeout=5, source_address=("127.0.0.1", 0))
            if tls:
                try:
                    s = ctx.wrap_socket(s)
                except (ssl.SSLError, OSError):
                    s.close()
                    opened.append(None)  # closed before the handshake
                    continue
            self.addCleanup(s.close)
            opened.append(s)
        kept, closed = [], 0
        for s in opened:
            if s is None or self.closed_by_edge(s):
                closed += 1
            else:
                kept.append(s)
        return kept, closed

    @staticmethod
    def closed_by_edge(s, wait=0.3):
        s.settimeout(wait)
        try:
            return s.recv(1) == b""
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True

    def phone_registers(self, user="1001"):
        conn = sipclient.SipConnection("127.0.0.1", self.tcp_port, source="127.0.0.3")
        self.addCleanup(conn.close)
        _, r = self.register(user, conn=conn)
        return sipclient.status(r) == 200

    def test_idle_connections_beyond_the_limit_are_closed(self):
        total = 0
        kept = []
        for _ in range(4):
            k, closed = self.idle(False, 60)
            kept += k
            total += closed
            self.assertTrue(self.phone_registers(), "a phone at another address")
        self.assertEqual(len(kept), self.limit)
        self.assertEqual(total, 4 * 60 - self.limit)
        # TLS and TCP count together: the address holds its limit already.
        _, closed = self.idle(True, 5)
        self.assertEqual(closed, 5)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_connection_limit_refusals_total "
                                         rf"{4 * 60 - self.limit + 5}$")
        # Connections that close make room again.
        for s in kept:
            s.close()
        time.sleep(0.5)
        kept, closed = self.idle(True, self.limit + 2)
        self.assertEqual((len(kept), closed), (self.limit, 2))
        self.assertTrue(self.phone_registers("1002"))
        for s in kept:
            s.close()
        time.sleep(0.5)
        self.assert_alive()


class ClosedConnectionsTest(base.EdgeFixture):
    """Phones reconnect all day: what a closed TLS connection held is given back."""

    def rss_kib(self):
        with open(f"/proc/{self.edge.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    def handshakes(self, n):
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        ctx.check_hostname = False
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"\r\n\r\n")  # a keep-alive ping, answered with a pong
                    self.assertEqual(tls.recv(2), b"\r\n")

    def test_a_thousand_tls_connections_closed_leave_no_memory_behind(self):
        if "ASAN_OPTIONS" in os.environ:
            # AddressSanitizer keeps freed memory in quarantine: the resident size says nothing
            # there. LeakSanitizer checks the same at the edge's exit instead (its report fails
            # the sanitizer run).
            self.skipTest("resident memory is not measurable under AddressSanitizer")
        self.handshakes(200)  # the allocator's and OpenSSL's caches warm up first
        time.sleep(1)
        before = self.rss_kib()
        self.handshakes(1000)
        time.sleep(2)  # sofia-sip frees a closed connection's transport shortly after
        grown = self.rss_kib() - before
        # Each closed connection once kept its SSL object and buffers (about 25 KiB).
        self.assertLess(grown, 2 * 1024, f"{grown} KiB more after 1000 connections")
        # The shared TLS context survives its connections: phones still register.
        _, r = self.register("1001")
        self.assertEqual(sipclient.status(r), 200, r)


if __name__ == "__main__":
    unittest.main()
