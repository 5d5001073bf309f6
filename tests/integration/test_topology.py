"""Integration: the call-topology matrix.

Every way a call meets rwg in a real deployment — a remote phone calling the office, the
office calling a remote phone, two remote phones on one rwg instance, and two remote phones
held by two instances — each with the endings a call has: answered and hung up by either side,
refused (486), cancelled, a CANCEL crossing the callee's 200 and crossing its 486, hold and
resume. The phones are scripted user agents (sipua) over real TLS/TCP connections; Kamailio is
the iPBX, and it hands a call between two remote phones back to rwg with the same Call-ID.

After each case nothing may be left: no call in `rwgctl call list`, no call record in Redis, no
active call on any instance, no media relay session, every instance alive, and no file
descriptor more than after the first case.
"""
import os
import re
import time
import unittest
import urllib.request

import rwgtest
import sipclient
import sipua
from test_calls import OFFICE_PASSWORD, OFFICE_USER, PUBLIC, RelayFixture
from test_sip_edge import DEVICES, DOMAIN


class TopologyFixture(RelayFixture):
    """Redis, control, Kamailio, the media relay and sip-edge; scripted phones; what is left."""
    edge_args = ["--pike-requests", "100000"]
    # The scripted phones send no media: calls must end by their own signalling, long before
    # the relay would report them idle.
    relay_idle_timeout = "60"

    def setUp(self):
        super().setUp()
        self.edges = [self.edge]
        self.fds = None

    def second_edge(self):
        """A second instance on the same Redis and relay; returns its TLS port."""
        tls = rwgtest.free_port()
        other = rwgtest.Service("sip-edge", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--sip-tls-listen", f"127.0.0.1:{tls}", "--sip-tcp-listen", "",
            "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}", "--instance", "sip-edge-1",
            "--sip-tls-cert-file", self.certs["cert"], "--sip-tls-key-file", self.certs["key"],
            "--min-expires", "2", "--config-refresh-ms", "200", "--pike-requests", "100000",
            "--relay-token-file", os.path.join(self.tmp, "relay-token"),
            "--relay-ca-file", self.certs["ca"]])
        other.log_path = os.path.join(self.tmp, "sip-edge-1.log")
        other.start()
        self.addCleanup(other.stop)
        self.edges.append(other)
        return tls

    # -- phones ----------------------------------------------------------------------------

    def remote(self, user, tls_port=None):
        conn = sipclient.SipConnection("127.0.0.1", tls_port or self.tls_port, tls=True,
                                       ca=self.certs["ca"])
        self.addCleanup(conn.close)
        r = conn.register_with_auth(user, DEVICES[user][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        ua = sipua.UA(conn, user, PUBLIC, secure=True)
        self.addCleanup(ua.close)
        return ua

    def office(self):
        conn = sipclient.SipConnection("127.0.0.2", self.kamailio.port)
        self.addCleanup(conn.close)
        r = conn.register_with_auth(OFFICE_USER, OFFICE_PASSWORD, "127.0.0.2")
        self.assertEqual(sipclient.status(r), 200, r)
        ua = sipua.UA(conn, OFFICE_USER, "127.0.0.2", secure=False,
                      auth=(OFFICE_USER, OFFICE_PASSWORD))
        self.addCleanup(ua.close)
        return ua

    # -- what is left ----------------------------------------------------------------------

    def edge_metric(self, edge, name):
        text = urllib.request.urlopen(edge.metrics_url, timeout=5).read().decode()
        m = re.search(rf"(?m)^{name} (\S+)", text)
        return float(m.group(1)) if m else None

    def relay_sessions(self):
        m = re.search(r"(?m)^rwg_media_relay_sessions (\S+)", self.relay_metrics())
        return int(float(m.group(1))) if m else None

    def fd_count(self):
        return sum(len(os.listdir(f"/proc/{e.proc.pid}/fd")) for e in self.edges)

    def leftovers(self):
        left = []
        calls = self.ctl.json("call", "list")["calls"]
        if calls:
            left.append(f"rwgctl call list: {calls}")
        keys = self.redis.cmd("KEYS", "rwg:call:*")
        if not keys.startswith(b"*0"):
            left.append(f"Redis call records: {keys!r}")
        if not self.redis.cmd("SCARD", "rwg:calls").startswith(b":0"):
            left.append("Redis set of calls not empty")
        for e in self.edges:
            if not e.alive():
                left.append(f"{e.log_path}: exited")
            elif self.edge_metric(e, "rwg_sip_edge_active_calls") != 0:
                left.append(f"{e.log_path}: active calls "
                            f"{self.edge_metric(e, 'rwg_sip_edge_active_calls')}")
        if self.relay_sessions() != 0:
            left.append(f"relay sessions: {self.relay_sessions()}")
        return left

    def assert_clean(self, case, *uas):
        try:
            rwgtest.wait_until("nothing left", lambda: not self.leftovers(), timeout=15)
        except AssertionError:
            raise AssertionError(f"{case}: left behind: {self.leftovers()}\n" + self.logs())
        for ua in uas:
            self.assertEqual(ua.failures, [], case)
        if self.fds is None:
            return
        # A connection the test's own metrics scrape left may take a moment to close.
        try:
            rwgtest.wait_until("file descriptors back", lambda: self.fd_count() <= self.fds + 2,
                               timeout=5)
        except AssertionError:
            raise AssertionError(f"{case}: file descriptors grew: {self.fd_count()} "
                                 f"(from {self.fds})") from None

    def logs(self):
        return "".join(f"\n--- {e.log_path}\n" + e.read_log()[-3000:] for e in self.edges)

    # -- the cases -------------------------------------------------------------------------

    def run_matrix(self, caller, callee, number, host):
        # Connections opened once per direction (the iPBX's toward an instance, for requests
        # as well as answers) are not leaks: file descriptors are counted once both hang-up
        # directions have run, and those two cases run again at the end.
        self.fds = None
        cases = [
            ("answered, caller hangs up", lambda: self.answered(caller, callee, number, host, True)),
            ("answered, callee hangs up", lambda: self.answered(caller, callee, number, host, False)),
            ("refused 486", lambda: self.refused(caller, callee, number, host)),
            ("cancelled", lambda: self.cancelled(caller, callee, number, host)),
            ("CANCEL crossing 200", lambda: self.crossing(caller, callee, number, host, 200)),
            ("CANCEL crossing 486", lambda: self.crossing(caller, callee, number, host, 486)),
            ("hold and resume", lambda: self.hold(caller, callee, number, host)),
            ("answered again, caller hangs up",
             lambda: self.answered(caller, callee, number, host, True)),
            ("answered again, callee hangs up",
             lambda: self.answered(caller, callee, number, host, False)),
        ]
        for i, (name, case) in enumerate(cases):
            with self.subTest(case=name):
                try:
                    case()
                except AssertionError as e:
                    raise AssertionError(f"{name}: {e}\n" + self.logs()) from None
                self.assert_clean(name, caller, callee)
                if i == 1:
                    self.fds = self.fd_count()

    def ringing(self, caller, callee, number, host):
        out = caller.dial(number, host)
        inc = callee.next_call()
        callee.ring(inc)
        caller.wait("180", lambda: "180 INVITE" in out.events)
        return out, inc

    def answered(self, caller, callee, number, host, caller_hangs_up):
        out, inc = self.ringing(caller, callee, number, host)
        callee.answer(inc)
        caller.wait("200", lambda: out.status == 200)
        callee.wait("ACK", lambda: "ACK<" in inc.events)
        time.sleep(0.2)
        if caller_hangs_up:
            caller.bye(out)
            callee.wait("BYE", lambda: "BYE<" in inc.events)
            caller.wait("200 to BYE", lambda: "200 BYE" in out.events)
        else:
            callee.bye(inc)
            caller.wait("BYE", lambda: "BYE<" in out.events)
            callee.wait("200 to BYE", lambda: "200 BYE" in inc.events)

    def refused(self, caller, callee, number, host):
        out, inc = self.ringing(caller, callee, number, host)
        callee.answer(inc, 486, "Busy Here")
        caller.wait("486", lambda: out.status == 486)

    def cancelled(self, caller, callee, number, host):
        out, inc = self.ringing(caller, callee, number, host)
        caller.cancel(out)
        caller.wait("487", lambda: out.status == 487)
        callee.wait("CANCEL", lambda: "CANCEL<" in inc.events and inc.status == 487)

    def crossing(self, caller, callee, number, host, code):
        out, inc = self.ringing(caller, callee, number, host)
        # The callee's final answer and the caller's CANCEL leave at the same time.
        callee.answer(inc, code, "OK" if code == 200 else "Busy Here")
        caller.cancel(out)
        caller.wait("the caller's call over", lambda: out.ended, timeout=15)
        if code == 200:
            # Whichever won, the callee's call ends: its 200 is acknowledged and ended with a
            # BYE, or the CANCEL came first (then its 200 is the one ended by a BYE too).
            callee.wait("the callee's call over", lambda: inc.ended or "BYE<" in inc.events,
                        timeout=15)
        self.assertIn(out.status, (200, 487, 486) if code == 486 else (200, 487))

    def hold(self, caller, callee, number, host):
        out, inc = self.ringing(caller, callee, number, host)
        callee.answer(inc)
        caller.wait("200", lambda: out.status == 200)
        callee.wait("ACK", lambda: "ACK<" in inc.events)
        caller.reinvite(out, "sendonly")
        callee.wait("hold offer", lambda: "reinvite:recvonly" in inc.events)
        caller.wait("hold answered", lambda: out.events.count("200 INVITE") >= 2)
        caller.reinvite(out, "sendrecv")
        callee.wait("resume offer", lambda: "reinvite:sendrecv" in inc.events)
        caller.wait("resume answered", lambda: out.events.count("200 INVITE") >= 3)
        self.assertEqual(self.relay_sessions(), 2 if callee.user != OFFICE_USER
                         and caller.user != OFFICE_USER else 1)
        callee.bye(inc)
        caller.wait("BYE", lambda: "BYE<" in out.events)



class TopologyTest(TopologyFixture):

    def test_remote_phone_calls_the_office(self):
        self.run_matrix(self.remote("1001"), self.office(), OFFICE_USER, PUBLIC)

    def test_office_calls_a_remote_phone(self):
        self.run_matrix(self.office(), self.remote("1002"), "21002", "127.0.0.2")

    def test_remote_phone_calls_a_remote_phone_on_the_same_instance(self):
        self.run_matrix(self.remote("1001"), self.remote("1002"), "21002", PUBLIC)

    def test_remote_phones_on_two_instances_call_each_other(self):
        other_tls = self.second_edge()
        a = self.remote("1001")
        b = self.remote("1002", other_tls)
        self.run_matrix(a, b, "21002", PUBLIC)
        self.run_matrix(b, a, "21001", PUBLIC)


class PhoneLimitsTest(TopologyFixture):
    """What one phone may do: a bounded number of calls, and only over its own connection."""
    edge_args = TopologyFixture.edge_args + ["--max-calls-per-device", "2"]

    def test_a_device_has_at_most_its_calls_and_gets_486_beyond(self):
        a, office = self.remote("1001"), self.office()
        calls = []
        for _ in range(2):
            out = a.dial(OFFICE_USER, PUBLIC)
            inc = office.next_call()
            office.ring(inc)
            a.wait("180", lambda: "180 INVITE" in out.events)
            calls.append((out, inc))
        third = a.dial(OFFICE_USER, PUBLIC)
        a.wait("refused", lambda: third.status is not None)
        self.assertEqual(third.status, 486)
        self.assertEqual(self.relay_sessions(), 2)
        for out, inc in calls:
            a.cancel(out)
            a.wait("487", lambda: out.status == 487)
        self.assert_clean("limit", a, office)
        # Below the limit again: a new call goes.
        self.answered(a, office, OFFICE_USER, PUBLIC, True)
        self.assert_clean("after the limit", a, office)

    def test_in_dialog_requests_come_from_the_phone_only(self):
        a, office = self.remote("1001"), self.office()
        other = self.remote("1002")  # another phone, registered, on its own connection
        out = a.dial(OFFICE_USER, PUBLIC)
        inc = office.next_call()
        office.answer(inc)
        a.wait("200", lambda: out.status == 200)
        # 1002 knows the dialog (Call-ID and tags) and sends a BYE in it over its connection.
        forged = sipua.Call(other, out.call_id, out.local_tag, False)
        forged.local_uri, forged.remote_uri = out.local_uri, out.remote_uri
        forged.remote_tag, forged.remote_target = out.remote_tag, out.remote_target
        forged.cseq = 10
        other.calls[out.call_id] = forged
        other.bye(forged)
        other.wait("refused", lambda: any(e.startswith("403 BYE") for e in forged.events))
        time.sleep(0.3)
        self.assertNotIn("BYE<", inc.events, "the office phone was hung up by another phone")
        self.assertEqual(len(self.ctl.json("call", "list")["calls"]), 1)
        a.bye(out)
        office.wait("BYE", lambda: "BYE<" in inc.events)
        self.assert_clean("forged BYE", a, office, other)


class PhoneMisbehavesTest(TopologyFixture):
    """A phone that never ends a cancelled INVITE, and one whose connection drops mid-call."""

    def test_a_cancelled_invite_the_phone_never_ends_is_released(self):
        office, b = self.office(), self.remote("1002")
        b.ignore_cancel = True
        out, inc = self.ringing(office, b, "21002", "127.0.0.2")
        office.cancel(out)
        office.wait("487", lambda: out.status == 487)
        b.wait("CANCEL", lambda: "CANCEL<" in inc.events)
        # The phone never answers its INVITE: rwg waits past 64 T1 (32 s), then lets go.
        time.sleep(5)
        self.assertEqual(len(self.ctl.json("call", "list")["calls"]), 1,
                         "the INVITE toward the phone is still open")
        rwgtest.wait_until("released", lambda: not self.leftovers(), timeout=50)
        self.assert_clean("never ended", office, b)
        # The phone's connection still carries calls.
        b.ignore_cancel = False
        self.answered(office, b, "21002", "127.0.0.2", True)
        self.assert_clean("after", office, b)

    def reconnect(self, ua, call, tls_port=None):
        """The phone's connection drops; it connects again, registers, and keeps its call."""
        ua.close()
        again = self.remote(ua.user, tls_port)
        call.ua = again
        again.calls[call.call_id] = call
        return again

    def call_then_reconnect(self):
        return self.call_then_reconnect_to(None)

    def call_then_reconnect_to(self, tls_port):
        """1001 calls the office, the office answers, then 1001's connection drops and it
        registers again over a new one (to `tls_port`: another instance)."""
        a, office = self.remote("1001"), self.office()
        out, inc = self.ringing(a, office, OFFICE_USER, PUBLIC)
        office.answer(inc)
        a.wait("200", lambda: out.status == 200)
        office.wait("ACK", lambda: "ACK<" in inc.events)
        return self.reconnect(a, out, tls_port), office, out, inc

    def test_the_office_hangs_up_a_phone_that_reconnected(self):
        a, office, out, inc = self.call_then_reconnect()
        # rwg's BYE reaches the phone over its new connection.
        office.bye(inc)
        office.wait("200 to BYE", lambda: "200 BYE" in inc.events)
        a.wait("BYE on the new connection", lambda: "BYE<" in out.events)
        self.assert_clean("office hangs up", a, office)

    def test_a_phone_that_reconnected_hangs_up(self):
        a, office, out, inc = self.call_then_reconnect()
        a.bye(out)
        a.wait("200 to BYE", lambda: "200 BYE" in out.events)
        office.wait("BYE", lambda: "BYE<" in inc.events)
        self.assert_clean("phone hangs up", a, office)

    def test_the_office_hangs_up_a_phone_that_moved_to_another_instance(self):
        """The phone's connection drops mid-call and it registers again through another
        instance. Requests in the call are not carried between instances (the holder cannot
        reach the phone's new connection), but the call still ends cleanly when the office
        hangs up: the office's BYE is answered, nothing is left on either instance."""
        other = self.second_edge()
        a, office, out, inc = self.call_then_reconnect_to(other)
        office.bye(inc)
        office.wait("200 to BYE", lambda: "200 BYE" in inc.events)
        self.assert_clean("office hangs up a phone that moved", a, office)
        # The phone, registered through the other instance, calls again.
        self.answered(a, office, OFFICE_USER, PUBLIC, True)
        self.assert_clean("a new call after the move", a, office)


class RelayRestartTest(TopologyFixture):
    """A call that ends while its media relay is restarting: the relay restores the session
    from Redis when it is back, and the SIP edge, whose first request to delete it was
    refused, asks again then; the session is not left until it is an orphan (an hour)."""

    def test_the_session_of_a_call_ended_meanwhile_is_deleted_when_the_relay_is_back(self):
        a, office = self.remote("1001"), self.office()
        out, inc = self.ringing(a, office, OFFICE_USER, PUBLIC)
        office.answer(inc)
        a.wait("200", lambda: out.status == 200)
        office.wait("ACK", lambda: "ACK<" in inc.events)
        self.assertEqual(self.relay_sessions(), 1)
        grpc = self.relay.ports["grpc"]
        self.relay.stop()
        a.bye(out)
        office.wait("BYE", lambda: "BYE<" in inc.events)
        a.wait("200 to BYE", lambda: "200 BYE" in out.events)
        rwgtest.wait_until("the deletion refused", lambda: "cannot delete the media relay "
                           "session; trying again" in self.edge.read_log(), timeout=10)
        time.sleep(3)  # asked again meanwhile, refused again
        # Back on the same API address (as a relay pod under its StatefulSet's name is).
        self.relay.grpc_listen = f"127.0.0.1:{grpc}"
        self.relay.start()
        self.assertIn("restored=1", self.relay.read_log())
        rwgtest.wait_until("the restored session deleted", lambda: self.relay_sessions() == 0,
                           timeout=40)
        # The session count drops before the relay removes the record and logs the end.
        rwgtest.wait_until("the deletion logged", lambda: "reason=deleted" in
                           self.relay.read_log().rsplit("restored=1", 1)[1], timeout=10)
        self.assert_clean("relay restarted", a, office)


if __name__ == "__main__":
    unittest.main()
