"""Integration: calls through the gateway (SIP edge part 2).

Kamailio is the iPBX (registrar, digest auth, call proxy). Phone A is baresip registered
through rwg over TLS with mandatory SRTP; phone B is baresip registered directly to Kamailio
with plain RTP, as an office phone. Each plays its own tone; each records what it hears, and
the test looks for the other side's tone in the recording (Goertzel filter). The media relay
is the real service, allocated by sip-edge.
"""
import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.parse
import urllib.request
import wave

import rwgtest
import sipclient
from test_sip_edge import DEVICES, IPBX_CREDENTIALS, EdgeFixture

OFFICE_USER = "2000"
OFFICE_PASSWORD = "office-pw-2000"
OTHER_USER = "2001"  # a second office phone
OTHER_PASSWORD = "office-pw-2001"
TONE_A = 600.0   # what remote phone A plays
TONE_B = 1400.0  # what office phone B plays
TOKEN = "calls-test-relay-token"
# The phones reach rwg at its public name: here an address, so that a phone can send its
# in-dialog requests (BYE) to rwg's Contact without a DNS name.
PUBLIC = "127.0.0.1"


def write_tone(path, freq, seconds=20.0, rate=8000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            frames += struct.pack("<h", int(9000 * math.sin(2 * math.pi * freq * i / rate)))
        w.writeframes(bytes(frames))


def goertzel_power(samples, rate, freq):
    """Relative power of `freq` in `samples` (normalised by the signal's energy)."""
    if not samples:
        return 0.0
    k = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    energy = sum(x * x for x in samples) or 1.0
    return power / (energy * len(samples) / 2)


def tones_heard(path, last=False):
    """Goertzel power of both tones over two seconds of the recording's loud part (its first,
    or with `last` its final two seconds)."""
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
        channels = w.getnchannels()
    samples = struct.unpack(f"<{len(data) // 2}h", data)[::channels]
    loud = [i for i, x in enumerate(samples) if abs(x) > 500]
    if last:
        end = loud[-1] if loud else len(samples)
        window = list(samples[max(0, end - rate * 2):end])
    else:
        start = loud[0] if loud else 0
        window = list(samples[start:start + rate * 2])
    return (goertzel_power(window, rate, TONE_A), goertzel_power(window, rate, TONE_B),
            max((abs(x) for x in window), default=0))


class Baresip:
    """A baresip phone controlled over its ctrl_tcp socket; its SIP and media on `address`.
    The phone hangs up when its `seconds` of tone end."""

    def __init__(self, tmp, name, account, ca, tone, transport, address="127.0.0.1",
                 seconds=20.0):
        self.dir = os.path.join(tmp, name)
        self.rec = os.path.join(self.dir, "rec")
        os.makedirs(self.rec)
        self.wav = os.path.join(self.dir, "tone.wav")
        write_tone(self.wav, tone, seconds)
        self.ca, self.transport, self.address = ca, transport, address
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write(account + "\n")
        self.log = open(os.path.join(self.dir, "baresip.log"), "wb")
        self.proc = None

    def write_config(self):
        self.ctrl_port = rwgtest.free_port()
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write(f"""poll_method epoll
sip_listen {self.address}:{rwgtest.free_port()}
sip_cafile {self.ca}
sip_trans_def {self.transport}
net_interface {self.address}
audio_player aubridge,nil
audio_source aufile,{self.wav}
ausrc_srate 8000
auplay_srate 8000
snd_path {self.rec}
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module srtp.so
module sndfile.so
module ctrl_tcp.so
module menu.so
module_app account.so
""")

    def start(self):
        # A free port can be taken by another process before baresip binds it: try others.
        for attempt in range(3):
            self.write_config()
            self.proc = subprocess.Popen(["baresip", "-f", self.dir, "-v"], stdout=self.log,
                                         stderr=self.log, stdin=subprocess.DEVNULL)
            try:
                rwgtest.wait_until("baresip control socket", self.ctrl_ready, timeout=10)
                return self
            except AssertionError:
                if "Address already in use" not in self.read_log() or attempt == 2:
                    raise AssertionError("baresip has no control socket:\n"
                                         + self.read_log()[-3000:])
                self.proc.kill()
                self.proc.wait()
        return self

    def ctrl_ready(self):
        try:
            socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1).close()
            return True
        except OSError:
            return False

    def command(self, cmd, params=""):
        body = json.dumps({"command": cmd, "params": params, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5) as s:
            s.sendall(str(len(body)).encode() + b":" + body + b",")
            s.settimeout(5)
            try:
                return s.recv(65536).decode(errors="replace")
            except (TimeoutError, socket.timeout):
                return ""

    def call_ended(self):
        """The phone ended its call: hung up itself, or got a BYE or CANCEL."""
        log = self.read_log()
        return "terminated" in log or "session closed" in log

    def read_log(self):
        self.log.flush()
        with open(os.path.join(self.dir, "baresip.log"), errors="replace") as f:
            return f.read()

    def recordings(self, kind="dec"):
        return sorted(glob.glob(os.path.join(self.rec, f"*{kind}*.wav")))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def invite(conn, user, number, sdp, domain):
    h, p = conn.local
    tag = os.urandom(4).hex()
    call_id = os.urandom(6).hex()
    conn.send_raw(f"INVITE sip:{number}@{domain} SIP/2.0\r\n"
                  f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{tag}\r\n"
                  f"From: <sip:{user}@{domain}>;tag={tag}\r\nTo: <sip:{number}@{domain}>\r\n"
                  f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:{user}@{h}:{p};transport=tls>\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
    while True:
        r = conn.read_message()
        if r is None or not r.startswith("SIP/2.0 1"):
            break
    if r and not r.startswith("SIP/2.0 2"):
        to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
        conn.send_raw(f"ACK sip:{number}@{domain} SIP/2.0\r\n"
                      f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{tag}\r\n"
                      f"From: <sip:{user}@{domain}>;tag={tag}\r\nTo: {to}\r\n"
                      f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n")
    return r


def offer(media_line="m=audio 4000 RTP/SAVP 0", crypto="a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
          "inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0"):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", media_line,
             "a=rtpmap:0 PCMU/8000"] + ([crypto] if crypto else [])
    return "\r\n".join(lines) + "\r\n"


def phone_request(conn, method, uri, user, tag, call_id, cseq, to, extra="", body="",
                  ctype="application/sdp"):
    """A request of a phone of our own (`user`) over its TLS connection to rwg."""
    h, p = conn.local
    conn.send_raw(f"{method} {uri} SIP/2.0\r\n"
                  f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                  f"From: <sip:{user}@{PUBLIC}>;tag={tag}\r\nTo: {to}\r\n"
                  f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:{user}@{h}:{p};transport=tls>\r\n" + extra
                  + (f"Content-Type: {ctype}\r\n" if body else "")
                  + f"Content-Length: {len(body)}\r\n\r\n{body}")


def final_response(conn):
    """The next final response read on a connection (provisional ones skipped)."""
    while True:
        m = conn.read_message()
        if not m.startswith("SIP/2.0 1"):
            return m


def next_request(conn, method):
    """The next `method` request read on a connection (anything else skipped)."""
    while True:
        m = conn.read_message()
        if m.startswith(method + " "):
            return m


def reply(conn, req, code, phrase="OK", extra="", body="", tag=None, contact=True):
    """Answers `req` on `conn` as a UA of our own (a To tag added when `tag` is given), with a
    Contact at the connection's address and an SDP body if any."""
    heads = [l for l in req.split("\r\n")
             if re.match(r"(?i)(via|record-route|from|to|call-id|cseq):", l)]
    if tag and not re.search(r"(?im)^To:.*;tag=", req):
        heads = [l + f";tag={tag}" if l.lower().startswith("to:") else l for l in heads]
    lh, lp = conn.local
    conn.send_raw(f"SIP/2.0 {code} {phrase}\r\n" + "\r\n".join(heads) + "\r\n"
                  + (f"Contact: <sip:ua@{lh}:{lp};transport=tcp>\r\n" if contact else "")
                  + extra + ("Content-Type: application/sdp\r\n" if body else "")
                  + f"Content-Length: {len(body)}\r\n\r\n{body}")


class RelayFixture(EdgeFixture):
    """The edge fixture with a media relay and the office extensions on Kamailio."""
    edge_args = ["--log-level", "debug"]
    relay_idle_timeout = "3"  # seconds without media before the relay reports a call idle
    ipbx_credentials = dict(IPBX_CREDENTIALS, **{OFFICE_USER: OFFICE_PASSWORD,
                                                 OTHER_USER: OTHER_PASSWORD,
                                                 "voicemail": "voicemail-pw"})

    def before_edge(self):
        self.ctl.ok("config", "set", f"public_name={PUBLIC}")
        token = os.path.join(self.tmp, "relay-token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        self.relay = rwgtest.Service("media-relay", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--api-token-file", token, "--bind-address", "127.0.0.1",
            "--port-min", "25000", "--port-max", "25999", "--workers", "1",
            "--idle-timeout-seconds", self.relay_idle_timeout,
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]])
        self.relay.start()
        self.addCleanup(self.relay.stop)
        # Calls need the relay advertised with its API address (its first heartbeat has none yet).
        rwgtest.wait_until("the relay advertised with its API address", lambda: b'"grpc":"127.'
                           in self.redis.cmd("HGETALL", "rwg:relay:instances"), timeout=10)
        # The relay's API over TLS, its certificate verified against the test CA.
        self.edge_args = self.edge_args + ["--relay-token-file", token,
                                           "--relay-ca-file", self.certs["ca"]]

    def relay_metrics(self):
        return urllib.request.urlopen(
            f"http://127.0.0.1:{self.relay.ports['metrics']}/metrics", timeout=5).read().decode()


def office_invite(office, icp_user, sdp="", extra=""):
    """An INVITE from the office phone on `office` (a connection to Kamailio) to `icp_user`,
    answering Kamailio's 407 as OFFICE_USER. Returns the INVITE's Call-ID, From tag and
    Request-URI; what comes next is the caller's to read."""
    oh, op = office.local
    uri, cid, tag = f"sip:{icp_user}@127.0.0.2", os.urandom(6).hex(), os.urandom(4).hex()

    def send(cseq, auth=""):
        office.send_raw(f"INVITE {uri} SIP/2.0\r\n"
                        f"Via: SIP/2.0/TCP {oh}:{op};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                        f"From: <sip:{OFFICE_USER}@127.0.0.2>;tag={tag}\r\n"
                        f"To: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} INVITE\r\n"
                        f"Max-Forwards: 70\r\nContact: <sip:{OFFICE_USER}@{oh}:{op};transport=tcp>\r\n"
                        + extra + auth
                        + ("Content-Type: application/sdp\r\n" if sdp else "")
                        + f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
    send(1)
    r = final_response(office)
    assert sipclient.status(r) == 407, r
    ch = sipclient.parse_challenges(r, "proxy-authenticate")[0]
    send(2, "Proxy-Authorization: " + sipclient.authorization(
        ch, OFFICE_USER, OFFICE_PASSWORD, "INVITE", uri) + "\r\n")
    return cid, tag, uri


@unittest.skipUnless(shutil.which("baresip"), "baresip not installed")
class CallsTest(RelayFixture):

    def office_phone(self, name, user, password, tone):
        p = Baresip(self.tmp, name,
                    f"<sip:{user}@127.0.0.2;transport=tcp>;auth_pass={password};"
                    f"outbound=\"sip:127.0.0.2:{self.kamailio.port};transport=tcp\";regint=600;"
                    "answermode=auto;audio_codecs=PCMU", self.certs["ca"], tone, "tcp")
        self.addCleanup(p.stop)
        p.start()
        rwgtest.wait_until(f"{user} registered", lambda: user in self.kamailio.registered(),
                           timeout=20)
        return p

    def phones(self, b_answers=True, a_answers=True):
        a = Baresip(self.tmp, "phone-a",
                    f"<sip:1001@{PUBLIC};transport=tls>;auth_pass={DEVICES['1001'][0]};"
                    f"outbound=\"sip:127.0.0.1:{self.tls_port};transport=tls\";regint=600;"
                    f"mediaenc=srtp-mand;answermode={'auto' if a_answers else 'manual'};"
                    "audio_codecs=PCMU,telephone-event",
                    self.certs["ca"], TONE_A, "tls")
        b = Baresip(self.tmp, "phone-b",
                    f"<sip:{OFFICE_USER}@127.0.0.2;transport=tcp>;auth_pass={OFFICE_PASSWORD};"
                    f"outbound=\"sip:127.0.0.2:{self.kamailio.port};transport=tcp\";regint=600;"
                    f"answermode={'auto' if b_answers else 'manual'};audio_codecs=PCMU",
                    self.certs["ca"], TONE_B, "tcp")
        for p in (a, b):
            self.addCleanup(p.stop)
            p.start()
        rwgtest.wait_until("both phones registered",
                           lambda: self.kamailio.registered() >= {"21001", OFFICE_USER},
                           timeout=20)
        return a, b

    def office_and_phone(self):
        """The office extension registered straight to Kamailio (TCP) and remote phone 1002
        registered through rwg over TLS, both as raw SIP connections of the test's own."""
        office = sipclient.SipConnection("127.0.0.2", self.kamailio.port)
        self.addCleanup(office.close)
        r = office.register_with_auth(OFFICE_USER, OFFICE_PASSWORD, "127.0.0.2")
        self.assertEqual(sipclient.status(r), 200, r)
        phone = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(phone.close)
        r = phone.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        return office, phone

    def assert_heard(self, phone, tone, other, last=False):
        recs = phone.recordings()
        self.assertTrue(recs, f"no recording: {os.listdir(phone.rec)}\n" + phone.read_log()[-3000:])
        pa, pb, peak = tones_heard(recs[-1], last)
        heard, not_heard = (pa, pb) if tone == TONE_A else (pb, pa)
        self.assertGreater(peak, 1000, f"{recs[-1]} is silent")
        self.assertGreater(heard, 0.5, f"tone {tone} Hz not in {recs[-1]} ({pa:.3f}, {pb:.3f})")
        self.assertLess(not_heard, 0.1, f"{recs[-1]} holds its own tone ({pa:.3f}, {pb:.3f})")

    def talk(self, caller, callee, number, during=None, hangup_by=None):
        caller.command("dial", number)
        try:
            rwgtest.wait_until("call answered", lambda: any(
                c["state"] == "confirmed" for c in self.calls()), timeout=15)
        except AssertionError:
            raise AssertionError("call not answered" + self.dump(caller, callee))
        time.sleep(3)
        if during:
            during()
        (hangup_by or caller).command("hangup")
        try:
            rwgtest.wait_until("call ended", lambda: self.calls() == [], timeout=10)
        except AssertionError:
            raise AssertionError("call not ended" + self.dump(caller, callee))
        for p in (caller, callee):  # recordings are complete once each phone ended its call
            rwgtest.wait_until("phone ended the call", lambda: p.call_ended(),
                               timeout=10)
        time.sleep(0.5)

    def dump(self, caller, callee):
        counts = "\n".join(l for l in self.metrics().splitlines()
                            if l.startswith(("rwg_sip_edge_requests_total",
                                             "rwg_sip_edge_responses_total")))
        kam = open(self.kamailio.log_path, errors="replace").read()[-3000:]
        return ("\n--- edge\n" + self.edge.read_log()[-3000:] + "\n" + counts +
                "\n--- kamailio\n" + kam + "\n--- caller\n" +
                self.trim(caller.read_log()) + "\n--- callee\n" + self.trim(callee.read_log()))

    @staticmethod
    def trim(log):
        return "\n".join(l for l in log.splitlines() if "audio=" not in l)[-3000:]

    def calls(self):
        m = re.search(r"^rwg_sip_edge_active_calls (\S+)", self.metrics(), re.M)
        n = int(float(m.group(1))) if m else 0
        return [{"state": "confirmed"}] * n if self.answered() else [{"state": "setup"}] * n

    def answered(self):
        return "call answered" in self.edge.read_log()

    def test_remote_phone_calls_office_phone_and_audio_crosses(self):
        a, b = self.phones()
        self.talk(a, b, OFFICE_USER)
        self.assert_heard(b, TONE_A, TONE_B)
        self.assert_heard(a, TONE_B, TONE_A)
        self.assert_media(a, b)
        self.assertIn("call ended", self.edge.read_log())

    def assert_media(self, a, b):
        """A's leg is SRTP (AES_CM_128_HMAC_SHA1_80: 10 more bytes per packet), B's plain RTP."""
        self.assertIn("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)", a.read_log())
        self.assertNotIn("SRTP is Enabled", b.read_log())
        m = self.relay_metrics()

        def value(name, **labels):
            for line in m.splitlines():
                if line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                                       for k, v in labels.items()):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0
        to_a = value("rwg_media_relay_packets_total", leg="set", direction="out")
        self.assertGreater(to_a, 100)
        self.assertGreater(value("rwg_media_relay_packets_total", leg="set", direction="in"), 100)
        self.assertEqual(value("rwg_media_relay_bytes_total", leg="set", direction="out"),
                         value("rwg_media_relay_bytes_total", leg="icp", direction="in")
                         + 10 * to_a)
        # Only what the answerer sent before its answer reached the relay (its key was not
        # known yet) fails authentication: a few packets at the start, never the stream.
        for leg in ("set", "icp"):
            self.assertLess(value("rwg_media_relay_dropped_total", leg=leg, reason="auth_failure"),
                            10)

    def test_office_phone_calls_remote_phone_and_audio_crosses(self):
        a, b = self.phones()
        self.talk(b, a, "21001")
        self.assert_heard(a, TONE_B, TONE_A)
        self.assert_heard(b, TONE_A, TONE_B)
        self.assert_media(a, b)


    def test_bad_offers_are_refused_and_leave_nothing(self):
        conn = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(conn.close)
        r = conn.register_with_auth("1001", DEVICES["1001"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        cases = [
            ("plain RTP from a phone without srtp_optional",
             offer("m=audio 4000 RTP/AVP 0", None), 488, "SRTP (RTP/SAVP) is required"),
            ("SRTP without a key", offer(crypto=None), 488, "without a usable a=crypto"),
            ("a key of the wrong length",
             offer(crypto="a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="), 400, "crypto"),
            ("an unknown suite",
             offer(crypto="a=crypto:1 F8_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u"
                          "b3BxcnN0"), 488, "F8_128_HMAC_SHA1_80"),
        ]
        for what, sdp, code, warning in cases:
            with self.subTest(what):
                r = invite(conn, "1001", OFFICE_USER, sdp, PUBLIC)
                self.assertEqual(sipclient.status(r), code, r)
                self.assertRegex(r, r"(?m)^Warning: 399 rwg \".*" + re.escape(warning), r)
        # Nothing was allocated, nothing is left.
        self.assertRegex(self.relay_metrics(), r"(?m)^rwg_media_relay_sessions 0")
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 0")
        # The same phone, with an offer rwg accepts, reaches the iPBX (nobody is registered
        # as 2000 here: Kamailio answers 404), and the relay session goes with the call.
        r = invite(conn, "1001", OFFICE_USER, offer(), PUBLIC)
        self.assertEqual(sipclient.status(r), 404, r)
        rwgtest.wait_until("the relay session deleted", lambda: re.search(
            r"(?m)^rwg_media_relay_sessions 0", self.relay_metrics()), timeout=5)

    def test_hold_and_resume(self):
        a, b = self.phones()

        def hold_resume():
            a.command("hold")
            rwgtest.wait_until("B gets the hold", lambda: b.read_log().count(
                "got re-INVITE") == 1, timeout=10)
            time.sleep(1)
            a.command("resume")
            rwgtest.wait_until("B gets the resume", lambda: b.read_log().count(
                "got re-INVITE") == 2, timeout=10)
            time.sleep(3)
        try:
            self.talk(a, b, OFFICE_USER, during=hold_resume)
        except AssertionError as e:
            raise AssertionError(str(e) + self.dump(a, b))
        # After the resume the audio crosses again, both ways.
        self.assert_heard(b, TONE_A, TONE_B, last=True)
        self.assert_heard(a, TONE_B, TONE_A, last=True)
        self.assert_media(a, b)

    def test_office_phone_hangs_up(self):
        a, b = self.phones()
        self.talk(a, b, OFFICE_USER, hangup_by=b)
        self.assertIn("reason=\"BYE from the iPBX\"", self.edge.read_log())
        self.assert_heard(b, TONE_A, TONE_B)

    def test_cancel_before_answer(self):
        a, b = self.phones(b_answers=False)
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("B rings", lambda: "Ringing" in a.read_log(), timeout=10)
        a.command("hangup")
        try:
            rwgtest.wait_until("call ended", lambda: "call ended" in self.edge.read_log(),
                               timeout=10)
        except AssertionError:
            raise AssertionError("not ended" + self.dump(a, b))
        self.assertIn("reason=\"cancelled by the phone\"", self.edge.read_log())
        rwgtest.wait_until("B stops ringing", lambda: b.call_ended()
                           or "closed" in b.read_log(), timeout=10)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 0")
        rwgtest.wait_until("the relay session deleted", lambda: re.search(
            r"(?m)^rwg_media_relay_sessions 0", self.relay_metrics()), timeout=5)
        self.assertRegex(self.metrics(),
                         r'rwg_sip_edge_call_outcomes_total\{code="487",direction="outbound"\} 1')

    def test_office_cancels_before_the_remote_phone_answers(self):
        a, b = self.phones(a_answers=False)
        b.command("dial", "21001")
        try:
            rwgtest.wait_until("A rings", lambda: any(
                c["state"] == "early" or c["state"] == "setup" for c in self.calls())
                and "Ringing" in b.read_log(), timeout=10)
        except AssertionError:
            raise AssertionError("A does not ring" + self.dump(b, a))
        b.command("hangup")  # Kamailio sends rwg a CANCEL
        try:
            rwgtest.wait_until("call ended", lambda: "call ended" in self.edge.read_log(),
                               timeout=10)
        except AssertionError:
            raise AssertionError("not ended" + self.dump(b, a))
        self.assertIn("reason=\"cancelled by the iPBX\"", self.edge.read_log())
        rwgtest.wait_until("A stops ringing", lambda: a.call_ended()
                           or "closed" in a.read_log(), timeout=10)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 0")
        rwgtest.wait_until("the relay session deleted", lambda: re.search(
            r"(?m)^rwg_media_relay_sessions 0", self.relay_metrics()), timeout=5)
        self.assertRegex(self.metrics(),
                         r'rwg_sip_edge_call_outcomes_total\{code="487",direction="inbound"\} 1')

    def test_emergency_number_is_dialled_for_the_callers_location(self):
        # The office phone B stands for the Paris emergency desk; Berlin has its own number.
        # A record damaged in Redis is left out; the rest of the table still routes calls.
        self.redis.cmd("HSET", "rwg:emergency", "FR\n112", json.dumps({"dial": ["2000"]}))
        self.ctl.ok("emergency", "set", "FR/Paris", "112", OFFICE_USER)
        self.ctl.ok("emergency", "set", "DE", "112", "2999")
        a, b = self.phones()
        time.sleep(1.5)  # the edge reads the table again within a second of a change
        # Device 1001 is in FR/Paris: 112 reaches the Paris desk, and audio crosses.
        self.talk(a, b, "112")
        self.assert_heard(b, TONE_A, TONE_B)
        log = self.edge.read_log()
        self.assertRegex(log, r'msg="emergency call" device=1001 location=FR/Paris number=112 '
                              r'route=FR/Paris dial=2000')
        self.assertRegex(log, r'level=error .*msg="emergency route damaged.*" location=FR '
                              r'number=112 error="a field of the record is not a string"')
        # Moved to Berlin, the same phone's 112 goes to Berlin's number (unknown to this iPBX:
        # it answers 404, which the phone gets).
        self.ctl.ok("device", "update", "1001", "--location", "DE/Berlin")
        time.sleep(1.5)  # the edge sees device changes within a second
        a.command("dial", "112")
        rwgtest.wait_until("the Berlin call", lambda: "dial=2999" in self.edge.read_log(),
                           timeout=10)
        self.assertRegex(self.edge.read_log(),
                         r'msg="emergency call" device=1001 location=DE/Berlin number=112 '
                         r'route=DE dial=2999')
        rwgtest.wait_until("the iPBX's 404 reached the phone",
                           lambda: "404" in a.read_log(), timeout=10)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_emergency_calls_total 2")

    def test_media_timeout_ends_the_call_on_both_sides(self):
        a, b = self.phones()
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("call answered", self.answered, timeout=15)
        time.sleep(1)
        # Both phones freeze: no more media. The relay reports the session idle after 3 s.
        for p in (a, b):
            p.proc.send_signal(signal.SIGSTOP)
        try:
            rwgtest.wait_until("media timeout", lambda: "call ended" in self.edge.read_log(),
                               timeout=15)
        finally:
            for p in (a, b):
                p.proc.send_signal(signal.SIGCONT)
        log = self.edge.read_log()
        self.assertIn('msg="media timeout"', log)
        self.assertIn('reason="media timeout"', log)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_media_timeouts_total 1")
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 0")
        # Both phones got the BYE (with its Reason) and ended the call.
        for p in (a, b):
            rwgtest.wait_until("phone ended the call", lambda: p.call_ended(),
                               timeout=10)

    def test_admin_sees_and_ends_a_call(self):
        a, b = self.phones()
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("call answered", self.answered, timeout=15)
        calls = self.ctl.json("call", "list")["calls"]
        self.assertEqual(len(calls), 1, calls)
        c = calls[0]
        self.assertEqual((c["direction"], c["device"], c["number"], c["state"], c["instance"]),
                         ("outbound", "1001", OFFICE_USER, "confirmed", "sip-edge-0"))
        self.assertTrue(c["relay_session"])
        shown = self.ctl.json("call", "show", c["id"])
        self.assertEqual(shown["icp_username"], "21001")
        self.assertTrue(shown["icp"]["call_id"].endswith("@rwg"))
        self.assertIn(c["id"], self.ctl.ok("call", "list"))
        self.ctl.ok("call", "hangup", c["id"])
        try:
            for p in (a, b):
                rwgtest.wait_until("phone ended the call", lambda: p.call_ended(),
                                   timeout=10)
        except AssertionError:
            raise AssertionError("not ended" + self.dump(a, b))
        self.assertIn('reason="ended by the administrator"', self.edge.read_log())
        rwgtest.wait_until("no call left", lambda: self.ctl.json("call", "list")["calls"] == [],
                           timeout=5)
        r = self.ctl.run("call", "show", c["id"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"no call '{c['id']}'", r.stderr)
        r = self.ctl.run("call", "hangup", "nosuchcall")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no call 'nosuchcall'", r.stderr)

    def test_calls_of_a_dead_instance_are_ended_by_another(self):
        other = rwgtest.Service("sip-edge", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--sip-tls-listen", "", "--sip-tcp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}", "--instance", "sip-edge-1",
            "--relay-token-file", os.path.join(self.tmp, "relay-token"),
            "--relay-ca-file", self.certs["ca"]])
        other.log_path = os.path.join(self.tmp, "sip-edge-1.log")
        other.start()
        self.addCleanup(other.stop)
        # A damaged record of a call of an instance long gone: nothing can be sent for it, it
        # is dropped.
        self.redis.cmd("SET", "rwg:call:c-damaged", json.dumps(
            {"id": "c-damaged", "instance": "sip-edge-9", "set": {"cseq": "2"}}), "EX", "600")
        self.redis.cmd("SADD", "rwg:calls", "c-damaged")
        a, b = self.phones()
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("call answered", self.answered, timeout=15)
        self.edge.proc.kill()  # the instance holding the call dies
        self.edge.proc.wait()
        # Within ~20 s (15 s without a heartbeat, then the next check) the other instance ends it.
        rwgtest.wait_until("the office phone got its BYE", lambda: b.call_ended(),
                           timeout=40)
        self.assertIn("call of a lost instance ended", other.read_log())
        self.assertEqual(self.ctl.json("call", "list")["calls"], [])
        self.assertRegex(other.read_log() + self.edge.read_log(),
                         r"damaged call record dropped.*c-damaged.*set\.cseq: not a number")
        self.assertEqual(self.redis.cli("EXISTS", "rwg:call:c-damaged"), ["0"])
        self.assertEqual(self.redis.cli("SISMEMBER", "rwg:calls", "c-damaged"), ["0"])
        rwgtest.wait_until("the relay session deleted", lambda: re.search(
            r"(?m)^rwg_media_relay_sessions 0", self.relay_metrics()), timeout=5)

    def test_dtmf_by_info_reaches_the_office_phone(self):
        _, b = self.phones()
        # A SIP phone of our own over TLS: registers, calls B, sends "5" in an INFO.
        conn = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(conn.close)
        r = conn.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        sdp = offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0 101").replace(
            "a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000")

        def request(method, cseq, to, uri, body="", ctype=""):
            phone_request(conn, method, uri, "1002", tag, call_id, cseq, to, body=body,
                          ctype=ctype)
        request("INVITE", 1, f"<sip:{OFFICE_USER}@{PUBLIC}>", f"sip:{OFFICE_USER}@{PUBLIC}", sdp,
                "application/sdp")
        while True:
            r = conn.read_message()
            if not r.startswith("SIP/2.0 1"):
                break
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertIn("RTP/SAVP", r)
        self.assertIn("telephone-event/8000", r, "RFC 4733 events are offered through")
        to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        request("ACK", 1, to, target)
        request("INFO", 2, to, target, "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
        r = conn.read_message()
        self.assertEqual(sipclient.status(r), 200, r)
        rwgtest.wait_until("B got the digit", lambda: "received DTMF: '5'" in b.read_log(),
                           timeout=5)
        request("BYE", 3, to, target)
        self.assertEqual(sipclient.status(conn.read_message()), 200)
        rwgtest.wait_until("B's call ended", b.call_ended, timeout=10)

    def test_message_waiting_subscription_through_rwg(self):
        """A phone subscribes to its message waiting; the iPBX's voicemail server (registered
        at Kamailio) accepts and notifies; the phone gets the NOTIFY; unsubscribing ends it."""
        vm = sipclient.SipConnection("127.0.0.2", self.kamailio.port)
        self.addCleanup(vm.close)
        r = vm.register_with_auth("voicemail", "voicemail-pw", "127.0.0.2")
        self.assertEqual(sipclient.status(r), 200, r)
        phone = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(phone.close)
        r = phone.register_with_auth("1001", DEVICES["1001"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        h, p = phone.local
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()

        def subscribe(cseq, expires, to=f"<sip:1001@{PUBLIC}>", uri=f"sip:1001@{PUBLIC}"):
            phone.send_raw(f"SUBSCRIBE {uri} SIP/2.0\r\n"
                           f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                           f"From: <sip:1001@{PUBLIC}>;tag={tag}\r\nTo: {to}\r\n"
                           f"Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nMax-Forwards: 70\r\n"
                           f"Contact: <sip:1001@{h}:{p};transport=tls>\r\n"
                           "Event: message-summary\r\n"
                           "Accept: application/simple-message-summary\r\n"
                           f"Expires: {expires}\r\nContent-Length: 0\r\n\r\n")

        def answer(conn, req, code, extra=""):
            heads = [l for l in req.split("\r\n")
                     if re.match(r"(?i)(via|record-route|from|to|call-id|cseq):", l)]
            if code != 100 and not re.search(r"(?im)^To:.*;tag=", req):
                heads = [l + ";tag=vm1" if l.lower().startswith("to:") else l for l in heads]
            conn.send_raw(f"SIP/2.0 {code} OK\r\n" + "\r\n".join(heads) + "\r\n" + extra
                          + "Content-Length: 0\r\n\r\n")

        subscribe(1, 600)
        sub = vm.read_message()
        self.assertTrue(sub.startswith("SUBSCRIBE sip:voicemail@"), sub)
        self.assertIn("To: <sip:21001@127.0.0.2>", sub, "the phone's own AOR, ICP side")
        self.assertIn("Event: message-summary", sub)
        self.assertNotIn(PUBLIC + ":" + str(p), sub, "nothing of the phone's addressing")
        vm_contact = f"<sip:voicemail@{vm.local[0]}:{vm.local[1]};transport=tcp>"
        answer(vm, sub, 202, f"Contact: {vm_contact}\r\nExpires: 600\r\n")
        r = phone.read_message()
        self.assertEqual(sipclient.status(r), 202, r)
        self.assertIn("Expires: 600", r)
        to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        # The voicemail server notifies in the subscription's dialog, through Kamailio.
        routes = re.findall(r"(?im)^Record-Route: (.*)$", sub)
        sub_from = re.search(r"(?im)^From: (.*)$", sub).group(1).strip()
        sub_to = re.search(r"(?im)^To: (.*)$", sub).group(1).strip() + ";tag=vm1"
        sub_cid = re.search(r"(?im)^Call-ID: (.*)$", sub).group(1).strip()
        sub_contact = re.search(r"(?im)^Contact: <([^>]*)>", sub).group(1)
        body = "Messages-Waiting: yes\r\nVoice-Message: 3/1 (0/0)\r\n"

        def notify(cseq, state):
            vh, vp = vm.local
            vm.send_raw(f"NOTIFY {sub_contact} SIP/2.0\r\n"
                        f"Via: SIP/2.0/TCP {vh}:{vp};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                        + "".join(f"Route: {r_}\r\n" for r_ in routes)
                        + f"From: {sub_to}\r\nTo: {sub_from}\r\nCall-ID: {sub_cid}\r\n"
                        f"CSeq: {cseq} NOTIFY\r\nMax-Forwards: 70\r\nContact: {vm_contact}\r\n"
                        f"Event: message-summary\r\nSubscription-State: {state}\r\n"
                        "Content-Type: application/simple-message-summary\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n{body}")
        notify(1, "active;expires=600")
        n = phone.read_message()
        self.assertTrue(n.startswith(f"NOTIFY sip:1001@{h}:{p}"), n)
        self.assertIn("Messages-Waiting: yes", n)
        self.assertIn("Subscription-State: active", n)
        self.assertNotIn("127.0.0.2", n, "no iPBX address reaches the phone")
        answer(phone, n, 200)
        self.assertEqual(sipclient.status(vm.read_message()), 200)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_subscriptions 1")
        # No session within a subscription's dialogs: an offer there is refused, nothing of it
        # goes to the iPBX.
        for cseq, method in ((2, "INVITE"), (3, "UPDATE")):
            phone_request(phone, method, target, "1001", tag, call_id, cseq, to, body=offer())
            r = phone.read_message()
            self.assertEqual(sipclient.status(r), 405, r)
            self.assertRegex(r, r"(?im)^Allow: .*SUBSCRIBE")
        self.assertEqual(vm.read_raw(0.5), b"", "nothing of the offers reaches the iPBX")
        # Unsubscribe: the server's final NOTIFY ends the subscription in rwg.
        subscribe(4, 0, to=to, uri=target)
        try:
            unsub = vm.read_message()
        except TimeoutError:
            raise AssertionError("no unsubscribe: phone got " + repr(phone.read_raw()) + "\n"
                                 + "\n".join(l for l in self.metrics().splitlines()
                                             if "SUBSCRIBE" in l) + self.edge.read_log()[-1500:])
        self.assertIn("Expires: 0", unsub)
        answer(vm, unsub, 200, "Expires: 0\r\n")
        self.assertEqual(sipclient.status(phone.read_message()), 200)
        notify(2, "terminated;reason=timeout")
        n = phone.read_message()
        self.assertIn("Subscription-State: terminated", n)
        answer(phone, n, 200)
        self.assertEqual(sipclient.status(vm.read_message()), 200)
        rwgtest.wait_until("subscription gone", lambda: re.search(
            r"(?m)^rwg_sip_edge_subscriptions 0", self.metrics()), timeout=5)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 0")

    def test_session_timers_pass_through(self):
        """RFC 4028 between the endpoints: rwg carries Session-Expires, Min-SE and the timer
        option tag across with the INVITE, a 422, the 200 and a refreshing UPDATE."""
        office, phone = self.office_and_phone()
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        sdp = offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0")

        def request(method, cseq, to, uri, extra="", body=""):
            # call_id changes between attempts: read at each request
            phone_request(phone, method, uri, "1002", tag, call_id, cseq, to, extra, body)

        def office_answer(req, code, phrase, extra="", body=""):
            reply(office, req, code, phrase, extra, body, tag="o1")

        def office_invite():
            try:
                return next_request(office, "INVITE")
            except TimeoutError:
                phone.sock.settimeout(1)
                try:
                    got = phone.read_message()
                except OSError:
                    got = "(nothing)"
                raise AssertionError("no INVITE at the office; the phone got: " + got
                                     + "\n--- edge\n" + self.edge.read_log()[-3000:])

        final = final_response

        uri, to = f"sip:{OFFICE_USER}@{PUBLIC}", f"<sip:{OFFICE_USER}@{PUBLIC}>"
        # A too short interval: the office asks for more with 422 and Min-SE.
        request("INVITE", 1, to, uri, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n"
                "Min-SE: 90\r\n", sdp)
        inv = office_invite()
        self.assertRegex(inv, r"(?im)^Session-Expires: 90;refresher=uac\r$")
        self.assertRegex(inv, r"(?im)^Min-SE: 90\r$")
        self.assertRegex(inv, r"(?im)^Supported:.*\btimer\b")
        office_answer(inv, 422, "Session Interval Too Small", "Min-SE: 1800\r\n")
        ack = office.read_message()  # Kamailio acknowledges the failure hop by hop
        self.assertTrue(ack.startswith("ACK "), ack)
        r = final(phone)
        self.assertEqual(sipclient.status(r), 422, r)
        self.assertRegex(r, r"(?im)^Min-SE: 1800\r$")
        # Again with the office's minimum; the office answers and the phone refreshes.
        call_id = os.urandom(6).hex()
        request("INVITE", 1, to, uri, "Require: timer\r\nSupported: timer\r\n"
                "Session-Expires: 1800\r\nMin-SE: 1800\r\n", sdp)
        inv = office_invite()
        self.assertRegex(inv, r"(?im)^Session-Expires: 1800\r$")
        self.assertRegex(inv, r"(?im)^Require: timer\r$", "a phone may insist on timers")
        office_sdp = offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0", crypto=None).replace(
            "127.0.0.1", "127.0.0.2")
        office_answer(inv, 200, "OK", "Require: timer\r\nSession-Expires: 1800;refresher=uac\r\n",
                      office_sdp)
        r = final(phone)
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?im)^Session-Expires: 1800;refresher=uac\r$")
        self.assertRegex(r, r"(?im)^Require:.*\btimer\b")
        self.assertRegex(r, r"(?im)^Allow:.*\bUPDATE\b", "the phone may refresh with UPDATE")
        to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        request("ACK", 1, to, target)
        # The office gets rwg's ACK of its 200.
        self.assertTrue(office.read_message().startswith("ACK "))
        # The refresh: an UPDATE without SDP, carried to the office and answered back.
        request("UPDATE", 2, to, target, "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n")
        upd = office.read_message()
        self.assertTrue(upd.startswith("UPDATE "), upd)
        self.assertRegex(upd, r"(?im)^Session-Expires: 1800;refresher=uac\r$")
        office_answer(upd, 200, "OK", "Require: timer\r\nSession-Expires: 1800;refresher=uac\r\n")
        r = final(phone)
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?im)^CSeq: 2 UPDATE")
        self.assertRegex(r, r"(?im)^Session-Expires: 1800;refresher=uac\r$")
        request("BYE", 3, to, target)
        bye = office.read_message()
        self.assertTrue(bye.startswith("BYE "), bye)
        office_answer(bye, 200, "OK")
        self.assertEqual(sipclient.status(final(phone)), 200)

    def test_reliable_provisional_answers_on_each_side(self):
        """100rel (RFC 3262) hop by hop: a side that requires it gets rwg's provisional answers
        reliably and its PRACKs answered; a side that sends reliable ones gets rwg's PRACKs
        (once per RSeq, a retransmission is not acknowledged or relayed again)."""
        office, phone = self.office_and_phone()
        header = lambda m, name: re.search(rf"(?im)^{name}: (.*)$", m).group(1).strip()
        office_sdp = offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0", crypto=None).replace(
            "127.0.0.1", "127.0.0.2")

        # The remote phone calls the office and requires reliable provisional answers.
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        uri, to = f"sip:{OFFICE_USER}@{PUBLIC}", f"<sip:{OFFICE_USER}@{PUBLIC}>"
        phone_request(phone, "INVITE", uri, "1002", tag, call_id, 1, to,
                      "Supported: 100rel\r\nRequire: 100rel\r\n",
                      offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0"))
        inv = next_request(office, "INVITE")
        self.assertRegex(inv, r"(?im)^Supported:.*\b100rel\b", "the caller's support carried on")
        self.assertNotRegex(inv, r"(?im)^Require:.*100rel", "rwg acknowledges for the phone")
        # The office answers reliably with early media, then sends the same 183 again.
        for _ in range(2):
            reply(office, inv, 183, "Session Progress", "Require: 100rel\r\nRSeq: 1\r\n",
                  office_sdp, tag="o1")
        prack = next_request(office, "PRACK")
        self.assertRegex(prack, rf"(?im)^RAck: 1 {header(inv, 'CSeq').split()[0]} INVITE\r$")
        self.assertRegex(prack, r"(?im)^To: .*;tag=o1")
        reply(office, prack, 200)
        reply(office, inv, 180, "Ringing", "Require: 100rel\r\nRSeq: 2\r\n", tag="o1")
        prack = next_request(office, "PRACK")
        self.assertRegex(prack, r"(?im)^RAck: 2 ", "the retransmitted 183 is not acknowledged")
        reply(office, prack, 200)
        # The phone gets the 183 (rwg's SRTP answer) and the 180 reliably, one after the other.
        rseqs = []
        for code in (183, 180):
            r = phone.read_message()
            self.assertEqual(sipclient.status(r), code, r)
            self.assertRegex(r, r"(?im)^Require:.*\b100rel\b")
            rseqs.append(int(header(r, "RSeq")))
            if code == 183:
                self.assertRegex(r, r"(?m)^m=audio \d+ RTP/SAVP 0")
                self.assertRegex(r, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
                self.assertNotIn("127.0.0.2", r, "nothing of the office's addressing")
            to = header(r, "To")
            target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
            phone_request(phone, "PRACK", target, "1002", tag, call_id, len(rseqs) + 1, to,
                          f"RAck: {rseqs[-1]} 1 INVITE\r\n")
            r = phone.read_message()
            self.assertEqual(sipclient.status(r), 200, r)
            self.assertRegex(r, rf"(?im)^CSeq: {len(rseqs) + 1} PRACK")
        self.assertEqual(rseqs[1], rseqs[0] + 1)
        # A PRACK for nothing rwg sent reliably: no such response.
        phone_request(phone, "PRACK", target, "1002", tag, call_id, 4,
                      to, f"RAck: {rseqs[1] + 5} 1 INVITE\r\n")
        self.assertEqual(sipclient.status(phone.read_message()), 481)
        reply(office, inv, 200, "OK", body=office_sdp, tag="o1")
        r = final_response(phone)
        self.assertEqual(sipclient.status(r), 200, r)
        phone_request(phone, "ACK", target, "1002", tag, call_id, 1, to)
        next_request(office, "ACK")
        phone_request(phone, "BYE", target, "1002", tag, call_id, 5, to)
        reply(office, next_request(office, "BYE"), 200)
        self.assertEqual(sipclient.status(final_response(phone)), 200)

        # The office calls the phone and requires 100rel; the phone answers reliably too.
        oh, op = office.local
        o_cid, o_tag, _ = office_invite(
            office, "21002", offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0", crypto=None),
            "Supported: 100rel\r\nRequire: 100rel\r\n")
        inv = next_request(phone, "INVITE")
        self.assertRegex(inv, r"(?im)^Supported:.*\b100rel\b")
        reply(phone, inv, 180, "Ringing", "Require: 100rel\r\nRSeq: 7\r\n", tag="p1")
        prack = next_request(phone, "PRACK")
        self.assertRegex(prack, rf"(?im)^RAck: 7 {header(inv, 'CSeq').split()[0]} INVITE\r$")
        reply(phone, prack, 200)
        r = office.read_message()
        while sipclient.status(r) == 100:
            r = office.read_message()
        self.assertEqual(sipclient.status(r), 180, r)
        self.assertRegex(r, r"(?im)^Require:.*\b100rel\b")
        rseq = int(header(r, "RSeq"))
        # The office's PRACK goes through Kamailio along the early dialog's route set.
        routes = list(reversed(re.findall(r"(?im)^Record-Route: (.*)$", r)))
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        office.send_raw(f"PRACK {target} SIP/2.0\r\n"
                        f"Via: SIP/2.0/TCP {oh}:{op};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                        + "".join(f"Route: {x.strip()}\r\n" for x in routes)
                        + f"From: <sip:{OFFICE_USER}@127.0.0.2>;tag={o_tag}\r\n"
                        f"To: {header(r, 'To')}\r\nCall-ID: {o_cid}\r\nCSeq: 3 PRACK\r\n"
                        f"Max-Forwards: 70\r\nRAck: {rseq} 2 INVITE\r\nContent-Length: 0\r\n\r\n")
        r = office.read_message()
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?im)^CSeq: 3 PRACK")
        # The phone is busy after all: the failure reaches the office.
        reply(phone, inv, 486, "Busy Here", tag="p1", contact=False)
        self.assertTrue(next_request(phone, "ACK").startswith("ACK "))
        r = final_response(office)
        self.assertEqual(sipclient.status(r), 486, r)
        rwgtest.wait_until("calls gone", lambda: re.search(
            r"(?m)^rwg_sip_edge_active_calls 0", self.metrics()), timeout=5)

    def test_offerless_invites_are_answered_in_the_ack(self):
        """Delayed offer both ways: the caller's INVITE has no SDP, rwg offers to the callee,
        the caller gets rwg's offer in the 200 and answers in its ACK; media then flows to the
        address in that answer. An ACK without an answer ends the call on both sides."""
        self.ctl.ok("device", "update", "1002", "--srtp-optional", "true")
        time.sleep(1.5)  # the edge re-reads devices once a second
        office, phone = self.office_and_phone()
        header = lambda m, name: re.search(rf"(?im)^{name}: (.*)$", m).group(1).strip()

        def udp(host):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            sock.settimeout(0.5)  # the relay here ends a session idle for 3 s
            self.addCleanup(sock.close)
            return sock

        def media_of(sdp):
            addr = re.search(r"(?m)^c=IN IP4 (\S+)", sdp).group(1)
            port = int(re.search(r"(?m)^m=audio (\d+) ", sdp).group(1))
            return addr, port

        def plain_answer(sock, host, pts="0"):
            return offer(f"m=audio {sock.getsockname()[1]} RTP/AVP {pts}", crypto=None).replace(
                "127.0.0.1", host)

        def crosses(sender, to, receiver):
            rtp = struct.pack("!BBHII", 0x80, 0, 7, 160, 0x1234abcd) + os.urandom(160)
            for _ in range(20):  # the relay may still be taking the answer in
                sender.sendto(rtp, to)
                try:
                    data, _ = receiver.recvfrom(2048)
                    return data[12:] == rtp[12:]
                except socket.timeout:
                    continue
            return False

        # 1. The phone calls without an offer.
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        uri, to = f"sip:{OFFICE_USER}@{PUBLIC}", f"<sip:{OFFICE_USER}@{PUBLIC}>"
        phone_request(phone, "INVITE", uri, "1002", tag, call_id, 1, to)
        inv = next_request(office, "INVITE")
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/AVP 0 8 9 101\r$", "rwg's own offer")
        self.assertRegex(inv, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        office_rtp = udp("127.0.0.2")
        reply(office, inv, 200, "OK", body=plain_answer(office_rtp, "127.0.0.2"), tag="o1")
        self.assertTrue(next_request(office, "ACK").startswith("ACK "))
        r = final_response(phone)
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?m)^m=audio \d+ RTP/SAVP 0\r$", "the office's codec, offered")
        self.assertRegex(r, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        relay_set = media_of(r)
        to = header(r, "To")
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        phone_rtp = udp("127.0.0.1")
        phone_request(phone, "ACK", target, "1002", tag, call_id, 1, to,
                      body=plain_answer(phone_rtp, "127.0.0.1"))
        # Only the ACK told the relay where the phone is: the office's audio reaches it.
        self.assertTrue(crosses(office_rtp, media_of(inv), phone_rtp),
                        "the office's RTP does not reach the phone")
        self.assertTrue(crosses(phone_rtp, relay_set, office_rtp))
        phone_request(phone, "BYE", target, "1002", tag, call_id, 2, to)
        reply(office, next_request(office, "BYE"), 200)
        self.assertEqual(sipclient.status(final_response(phone)), 200)

        # 2. The office calls without an offer; the phone answers rwg's offer, the office
        # answers the phone's codecs in its ACK.
        oh, op = office.local
        o_cid, o_tag, _ = office_invite(office, "21002")
        inv = next_request(phone, "INVITE")
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/SAVP 0 8 9 101\r$")
        phone_rtp = udp("127.0.0.1")
        reply(phone, inv, 200, "OK", body=plain_answer(phone_rtp, "127.0.0.1", "8"), tag="p1")
        self.assertTrue(next_request(phone, "ACK").startswith("ACK "))
        r = final_response(office)
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?m)^m=audio \d+ RTP/AVP 8\r$")
        self.assertRegex(r, r"(?m)^a=crypto:1 ", "AVP with a key toward the iPBX, as ever")
        relay_icp = media_of(r)
        routes = list(reversed(re.findall(r"(?im)^Record-Route: (.*)$", r)))
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        o_to = header(r, "To")

        def office_in_dialog(method, cseq, body=""):
            office.send_raw(f"{method} {target} SIP/2.0\r\n"
                            f"Via: SIP/2.0/TCP {oh}:{op};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                            + "".join(f"Route: {x.strip()}\r\n" for x in routes)
                            + f"From: <sip:{OFFICE_USER}@127.0.0.2>;tag={o_tag}\r\n"
                            f"To: {o_to}\r\nCall-ID: {o_cid}\r\nCSeq: {cseq} {method}\r\n"
                            f"Max-Forwards: 70\r\n"
                            + ("Content-Type: application/sdp\r\n" if body else "")
                            + f"Content-Length: {len(body)}\r\n\r\n{body}")
        office_rtp = udp("127.0.0.2")
        office_in_dialog("ACK", 2, plain_answer(office_rtp, "127.0.0.2", "8"))
        self.assertTrue(crosses(phone_rtp, media_of(inv), office_rtp),
                        "the phone's RTP does not reach the office")
        self.assertTrue(crosses(office_rtp, relay_icp, phone_rtp))
        office_in_dialog("BYE", 3)
        reply(phone, next_request(phone, "BYE"), 200)
        self.assertEqual(sipclient.status(final_response(office)), 200)

        # 3. An ACK without the answer: the call ends on both sides.
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        to = f"<sip:{OFFICE_USER}@{PUBLIC}>"
        phone_request(phone, "INVITE", uri, "1002", tag, call_id, 1, to)
        inv = next_request(office, "INVITE")
        reply(office, inv, 200, "OK", body=plain_answer(udp("127.0.0.2"), "127.0.0.2"), tag="o3")
        r = final_response(phone)
        self.assertEqual(sipclient.status(r), 200, r)
        phone_request(phone, "ACK", re.search(r"(?im)^Contact: <([^>]*)>", r).group(1), "1002",
                      tag, call_id, 1, header(r, "To"))
        bye = next_request(office, "BYE")
        self.assertIn("no usable answer in the ACK", bye)
        reply(office, bye, 200)
        bye = next_request(phone, "BYE")
        reply(phone, bye, 200)
        rwgtest.wait_until("calls gone", lambda: re.search(
            r"(?m)^rwg_sip_edge_active_calls 0", self.metrics()), timeout=5)

    def test_media_settings_of_the_gateway_configuration(self):
        """R-CFG applies to calls without a restart: the override addresses are what each side
        sees in SDP, each side's outbound profile is what rwg offers it, its inbound policy
        what rwg accepts from it, and the SRTP suite is the configured one."""
        office, phone = self.office_and_phone()

        def configure(*settings):
            self.ctl.ok("config", "set", *settings)
            time.sleep(0.6)  # the edge re-reads the configuration every 200 ms here

        def phone_calls_office():
            """rwg's INVITE to the office for a phone's SRTP offer; the call is then cancelled
            by the office's 486."""
            tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
            phone_request(phone, "INVITE", f"sip:{OFFICE_USER}@{PUBLIC}", "1002", tag, call_id,
                          1, f"<sip:{OFFICE_USER}@{PUBLIC}>", body=offer(
                              f"m=audio {rwgtest.free_port()} RTP/SAVP 0"))
            inv = next_request(office, "INVITE")
            reply(office, inv, 486, "Busy Here", tag="o1", contact=False)
            next_request(office, "ACK")
            self.assertEqual(sipclient.status(final_response(phone)), 486)
            return inv

        def office_calls_phone(sdp, refusal=False):
            """The office's INVITE (with `sdp`) to the phone: what the phone gets, or rwg's
            refusal when one is expected."""
            office_invite(office, "21002", sdp)
            if refusal:
                return None, final_response(office)
            inv = next_request(phone, "INVITE")
            reply(phone, inv, 486, "Busy Here", tag="p1", contact=False)
            next_request(phone, "ACK")
            self.assertEqual(sipclient.status(final_response(office)), 486)
            return inv, None

        plain = offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0", crypto=None).replace(
            "127.0.0.1", "127.0.0.2")
        # Defaults: AVP with a key toward the iPBX, SRTP toward the phone, the relay's address.
        inv = phone_calls_office()
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/AVP 0")
        self.assertRegex(inv, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
        self.assertRegex(inv, r"(?m)^c=IN IP4 127\.0\.0\.1")
        configure("network.rtp_set_side_address=198.51.100.7",
                  "network.rtp_icp_side_address=10.9.8.7", "sip.icp_side_outbound=SRTP_ONLY",
                  "sip.set_side_outbound=AVP_CRYPTO", "sip.srtp_suite=AES_CM_128_HMAC_SHA1_32")
        inv = phone_calls_office()
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/SAVP 0")
        self.assertRegex(inv, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:")
        self.assertRegex(inv, r"(?m)^c=IN IP4 10\.9\.8\.7")
        self.assertNotIn("127.0.0.1", inv.split("\r\n\r\n", 1)[1])
        inv, refused = office_calls_phone(plain)
        self.assertIsNone(refused, refused)
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/AVP 0")
        self.assertRegex(inv, r"(?m)^a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:")
        self.assertRegex(inv, r"(?m)^c=IN IP4 198\.51\.100\.7")
        # Plain RTP only toward the iPBX; SRTP demanded from it.
        configure("sip.icp_side_outbound=RTP_ONLY", "sip.icp_side_inbound=SRTP_ONLY")
        inv = phone_calls_office()
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/AVP 0")
        self.assertNotIn("a=crypto", inv)
        _, refused = office_calls_phone(plain, refusal=True)
        self.assertEqual(sipclient.status(refused), 488, refused)
        self.assertIn("ICP-side policy is SRTP_ONLY", refused)
        rwgtest.wait_until("no call left", lambda: re.search(
            r"(?m)^rwg_sip_edge_active_calls 0", self.metrics()), timeout=5)

    def test_attended_transfer_refer_names_the_office_side_dialog(self):
        """A (remote, through rwg) talks to B, calls C, then transfers B to C with
        REFER Refer-To: C?Replaces=<A's dialog with C>. B must get the Replaces of the dialog C
        knows (rwg's ICP-side dialog with C), and A the 202 and B's NOTIFY."""
        offices = {}
        for user, pw in ((OFFICE_USER, OFFICE_PASSWORD), (OTHER_USER, OTHER_PASSWORD)):
            conn = sipclient.SipConnection("127.0.0.2", self.kamailio.port)
            self.addCleanup(conn.close)
            r = conn.register_with_auth(user, pw, "127.0.0.2")
            self.assertEqual(sipclient.status(r), 200, r)
            offices[user] = conn
        b, c = offices[OFFICE_USER], offices[OTHER_USER]
        a = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(a.close)
        r = a.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)

        def send(method, d, cseq, extra="", body=""):
            phone_request(a, method, d["target"], "1002", d["tag"], d["call_id"], cseq, d["to"],
                          extra, body)

        def answer(conn, req, code, extra="", body="", tag=None):
            reply(conn, req, code, "OK", extra, body, tag)

        final = final_response

        def call(number, office, office_tag):
            d = {"tag": os.urandom(4).hex(), "call_id": os.urandom(6).hex(),
                 "to": f"<sip:{number}@{PUBLIC}>", "target": f"sip:{number}@{PUBLIC}"}
            send("INVITE", d, 1, body=offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0"))
            inv = next_request(office, "INVITE")
            answer(office, inv, 200, body=offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0",
                                                crypto=None), tag=office_tag)
            r = final(a)
            self.assertEqual(sipclient.status(r), 200, r)
            d["to"] = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
            d["target"] = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
            d["rwg_tag"] = re.search(r";tag=([^;\s>]+)", d["to"]).group(1)
            send("ACK", d, 1)
            self.assertTrue(next_request(office, "ACK").startswith("ACK "))
            # The office side of the dialog, as the office phone knows it.
            d["office_call_id"] = re.search(r"(?im)^Call-ID: (.*)$", inv).group(1).strip()
            d["office_from_tag"] = re.search(r"(?im)^From: .*;tag=([^;\s]+)", inv).group(1)
            d["office_routes"] = re.findall(r"(?im)^Record-Route: (.*)$", inv)
            return d

        ab = call(OFFICE_USER, b, "b1")
        ac = call(OTHER_USER, c, "c1")
        replaces = urllib.parse.quote(
            f"{ac['call_id']};to-tag={ac['rwg_tag']};from-tag={ac['tag']}", safe="")
        send("REFER", ab, 2, f"Refer-To: <sip:{OTHER_USER}@{PUBLIC}?Replaces={replaces}>\r\n"
             f"Referred-By: <sip:1002@{PUBLIC}>\r\n")
        refer = next_request(b, "REFER")
        refer_to = re.search(r"(?im)^Refer-To: (.*)$", refer).group(1).strip()
        m = re.search(r"\?Replaces=([^>]*)>", refer_to)
        self.assertIsNotNone(m, refer_to)
        self.assertEqual(urllib.parse.unquote(m.group(1)),
                         f"{ac['office_call_id']};to-tag=c1;from-tag={ac['office_from_tag']}",
                         "B is told to replace the dialog C has (rwg's, ICP side)")
        self.assertTrue(refer_to.startswith(f"<sip:{OTHER_USER}@127.0.0.2"), refer_to)
        self.assertNotIn(ac["call_id"], refer, "nothing of the phone's side reaches the office")
        answer(b, refer, 202)
        r = final(a)
        self.assertEqual(sipclient.status(r), 202, r)
        self.assertRegex(r, r"(?im)^CSeq: 2 REFER")
        # B reports the transfer's progress in the REFER's subscription; A gets it.
        contact = re.search(r"(?im)^Contact: <([^>]*)>", refer).group(1)
        frm = re.search(r"(?im)^From: (.*)$", refer).group(1).strip()
        to = re.search(r"(?im)^To: (.*)$", refer).group(1).strip()
        cid = re.search(r"(?im)^Call-ID: (.*)$", refer).group(1).strip()
        bh, bp = b.local
        frag = "SIP/2.0 200 OK\r\n"
        b.send_raw(f"NOTIFY {contact} SIP/2.0\r\n"
                   f"Via: SIP/2.0/TCP {bh}:{bp};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                   + "".join(f"Route: {r_}\r\n" for r_ in ab["office_routes"])
                   + f"From: {to}\r\nTo: {frm}\r\nCall-ID: {cid}\r\nCSeq: 9 NOTIFY\r\n"
                   f"Max-Forwards: 70\r\nContact: <sip:office@{bh}:{bp};transport=tcp>\r\n"
                   "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n"
                   "Content-Type: message/sipfrag\r\n"
                   f"Content-Length: {len(frag)}\r\n\r\n{frag}")
        n = next_request(a, "NOTIFY")
        self.assertIn("Event: refer", n)
        self.assertIn("SIP/2.0 200 OK", n)
        answer(a, n, 200)
        self.assertEqual(sipclient.status(final(b)), 200)
        # Both calls end from A.
        for d, office in ((ab, b), (ac, c)):
            send("BYE", d, 3)
            answer(office, next_request(office, "BYE"), 200)
            self.assertEqual(sipclient.status(final(a)), 200)

    def test_blind_transfer_by_the_remote_phone(self):
        a, b = self.phones()
        c = self.office_phone("phone-c", OTHER_USER, OTHER_PASSWORD, TONE_A)
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("call answered", self.answered, timeout=15)
        time.sleep(1)
        a.command("transfer", OTHER_USER)  # REFER through rwg: B calls C
        try:
            rwgtest.wait_until("C answered B", lambda: "Call established" in c.read_log(),
                               timeout=15)
        except AssertionError:
            raise AssertionError("no transfer" + self.dump(a, b))
        rwgtest.wait_until("A's call ended", a.call_ended, timeout=15)
        self.assertRegex(self.metrics(), r'rwg_sip_edge_requests_total\{method="REFER",side="set"\} 1')
        time.sleep(2)
        b.command("hangup")
        rwgtest.wait_until("C's call ended", c.call_ended, timeout=10)
        time.sleep(0.5)
        # C heard B: the transferred call is B <-> C, without rwg.
        self.assert_heard(c, TONE_B, TONE_A)

    def test_dtmf_by_rfc4733_reaches_the_office_phone(self):
        a, b = self.phones()
        a.command("dial", OFFICE_USER)
        rwgtest.wait_until("call answered", self.answered, timeout=15)
        time.sleep(1)
        a.command("sndcode", "7")
        try:
            # An RFC 4733 event in B's media stream (B logs INFO digits as "received DTMF").
            rwgtest.wait_until("B got the digit", lambda: "received event: '7'" in b.read_log(),
                               timeout=5)
        except AssertionError:
            raise AssertionError("no digit" + self.dump(a, b))
        a.command("hangup")
        rwgtest.wait_until("B's call ended", b.call_ended, timeout=10)

    @unittest.skipUnless(shutil.which("sipp"), "sipp not installed")
    def test_sipp_phone_with_bad_offers(self):
        scenario = os.path.join(os.path.dirname(__file__), "../sip_edge/sipp-bad-offers.xml")
        inf = os.path.join(self.tmp, "bad-offers.csv")
        with open(inf, "w") as f:
            f.write("SEQUENTIAL\n")
            f.write(f"1002;[authentication username=1002 password={DEVICES['1002'][0]}];"
                    f"{PUBLIC}\n")
        log = os.path.join(self.tmp, "bad-offers-messages.log")
        try:
            r = subprocess.run(["sipp", "-sf", scenario, "-inf", inf, "-t", "t1", "-m", "1",
                                "-i", "127.0.0.1", "-timeout", "20s", "-nostdin", "-trace_err",
                                "-trace_msg", "-message_file", log, f"127.0.0.1:{self.tcp_port}"],
                               capture_output=True, text=True, cwd=self.tmp, timeout=40)
            code = r.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        with open(log, errors="replace") as f:
            messages = f.read()
        self.assertEqual(code, 0, messages[-4000:])
        m = self.metrics()
        self.assertRegex(m, r'rwg_sip_edge_responses_total\{code="488",method="INVITE"\} 2')
        self.assertRegex(m, r'rwg_sip_edge_responses_total\{code="400",method="INVITE"\} 1')
        self.assertRegex(m, r"(?m)^rwg_sip_edge_active_calls 0")
        self.assertRegex(self.relay_metrics(), r"(?m)^rwg_media_relay_sessions 0")
        self.assertRegex(self.relay_metrics(), r"(?m)^rwg_media_relay_ports_used 0")

    def test_emergency_call_without_a_licence(self):
        """A phone refused a licence is not registered, yet its emergency call goes through:
        it authenticates the INVITE itself, and its device's location applies."""
        self.ctl.ok("emergency", "set", "FR/Paris", "112", OFFICE_USER)
        self.ctl.ok("config", "set", "licences.teleworker=1")
        _, b = self.phones()  # A (1001) takes the only licence
        time.sleep(1.5)
        conn = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(conn.close)
        r = conn.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertTrue(r.startswith("SIP/2.0 403 Licence limit reached"), r)
        h, p = conn.local
        tag, call_id = os.urandom(4).hex(), os.urandom(6).hex()
        uri = f"sip:112@{PUBLIC}"

        def send_invite(cseq, auth=None):
            sdp = offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0")
            conn.send_raw(f"INVITE {uri} SIP/2.0\r\n"
                          f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                          f"From: <sip:1002@{PUBLIC}>;tag={tag}\r\nTo: <{uri}>\r\n"
                          f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\n"
                          f"Contact: <sip:1002@{h}:{p};transport=tls>\r\n"
                          + (f"Proxy-Authorization: {auth}\r\n" if auth else "")
                          + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n"
                          f"\r\n{sdp}")
            while True:
                r = conn.read_message()
                if not r.startswith("SIP/2.0 1"):
                    return r

        def ack(cseq, r, target=uri):
            to = re.search(r"(?im)^To: (.*)$", r).group(1).strip()
            conn.send_raw(f"ACK {target} SIP/2.0\r\n"
                          f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                          f"From: <sip:1002@{PUBLIC}>;tag={tag}\r\nTo: {to}\r\n"
                          f"Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70\r\n"
                          "Content-Length: 0\r\n\r\n")
            return to

        r = send_invite(1)
        self.assertEqual(sipclient.status(r), 407, r)
        ack(1, r)
        ch = sipclient.parse_challenges(r, "proxy-authenticate")[0]
        r = send_invite(2, sipclient.authorization(ch, "1002", "not-the-password", "INVITE", uri))
        self.assertEqual(sipclient.status(r), 403, "a wrong password gets nowhere")
        ack(2, r)
        r = send_invite(3)
        ch = sipclient.parse_challenges(r, "proxy-authenticate")[0]
        ack(3, r)
        r = send_invite(4, sipclient.authorization(ch, "1002", DEVICES["1002"][0], "INVITE",
                                                    uri))
        self.assertEqual(sipclient.status(r), 200, r)
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        to = ack(4, r, target)
        self.assertIn('msg="emergency call" device=1002 location=FR/Paris number=112',
                      self.edge.read_log())
        rwgtest.wait_until("B answered", lambda: "Call established" in b.read_log(), timeout=5)
        conn.send_raw(f"BYE {target} SIP/2.0\r\n"
                      f"Via: SIP/2.0/TLS {h}:{p};branch=z9hG4bK{os.urandom(4).hex()}\r\n"
                      f"From: <sip:1002@{PUBLIC}>;tag={tag}\r\nTo: {to}\r\n"
                      f"Call-ID: {call_id}\r\nCSeq: 5 BYE\r\nMax-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n")
        self.assertEqual(sipclient.status(conn.read_message()), 200)
        rwgtest.wait_until("B's call ended", b.call_ended, timeout=10)


class CallOnAnotherInstanceTest(RelayFixture):
    """Two sip-edge instances: the iPBX calls a phone at the instance that does not hold it
    (the phone moved and the iPBX has not learnt so yet)."""

    def setUp(self):
        super().setUp()
        self.b_icp = rwgtest.free_port()
        self.edge_b = rwgtest.Service("sip-edge", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--sip-tls-listen", "", "--sip-tcp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--icp-listen", f"127.0.0.1:{self.b_icp}", "--instance", "sip-edge-1",
            "--min-expires", "2", "--config-refresh-ms", "200"] + self.edge_args)
        self.edge_b.log_path = os.path.join(self.tmp, "sip-edge-1.log")
        self.edge_b.start()
        self.addCleanup(self.edge_b.stop)

    def ipbx(self, port):
        c = sipclient.SipConnection("127.0.0.1", port, source="127.0.0.2")
        self.addCleanup(c.close)
        return c

    def test_invite_at_the_other_instance_reaches_the_phone(self):
        phone = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(phone.close)
        r = phone.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        rwgtest.wait_until("both instances advertised", lambda: b"sip-edge-0" in self.redis.cmd(
            "HKEYS", "rwg:edge:instances") and b"sip-edge-1" in self.redis.cmd(
            "HKEYS", "rwg:edge:instances"), timeout=10)
        time.sleep(1.5)  # B reads the instances once a second
        b = self.ipbx(self.b_icp)
        bh, bp = b.local
        header = lambda m, name: re.search(rf"(?im)^{name}: (.*)$", m).group(1).strip()
        sdp = offer(f"m=audio {rwgtest.free_port()} RTP/AVP 0", crypto=None).replace(
            "127.0.0.1", "127.0.0.2")

        def invite(user, cid, tag, branch):
            b.send_raw(f"INVITE sip:{user}@127.0.0.1:{self.b_icp};transport=tcp SIP/2.0\r\n"
                       f"Via: SIP/2.0/TCP {bh}:{bp};branch={branch}\r\n"
                       f"From: \"Office\" <sip:{OFFICE_USER}@127.0.0.2>;tag={tag}\r\n"
                       f"To: <sip:{user}@127.0.0.2>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n"
                       f"Max-Forwards: 70\r\nContact: <sip:{OFFICE_USER}@{bh}:{bp};transport=tcp>\r\n"
                       f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")

        def answer_from_b():
            r = b.read_message()
            while sipclient.status(r) == 100:
                r = b.read_message()
            return r

        # Nobody holds 21001: B says so.
        invite("21001", "nobody", "t0", "z9hG4bKnobody")
        self.assertEqual(sipclient.status(answer_from_b()), 480)

        invite("21002", "moved-1", "t1", "z9hG4bKmoved1")
        inv = next_request(phone, "INVITE")
        self.assertNotIn("127.0.0.2", inv, "nothing of the iPBX's addressing reaches the phone")
        self.assertNotIn("X-Rwg-Forwarded", inv)
        self.assertRegex(inv, r"(?m)^m=audio \d+ RTP/SAVP 0")
        reply(phone, inv, 180, "Ringing", tag="p1")
        r = answer_from_b()
        self.assertEqual(sipclient.status(r), 180, r)
        self.assertEqual(len(re.findall(r"(?im)^Via:", r)), 1, "only the iPBX's Via comes back")
        self.assertIn(f"127.0.0.1:{self.icp_port}", header(r, "Contact"),
                      "the rest of the dialog goes to the instance holding the phone")
        phone_sdp = offer(f"m=audio {rwgtest.free_port()} RTP/SAVP 0")
        reply(phone, inv, 200, "OK", body=phone_sdp, tag="p1")
        r = answer_from_b()
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?m)^m=audio \d+ RTP/AVP 0")
        self.assertNotIn("X-Rwg-Forwarded", r)
        to = header(r, "To")
        target = re.search(r"(?im)^Contact: <([^>]*)>", r).group(1)
        # The iPBX continues the dialog with the holder (A) directly.
        a = self.ipbx(self.icp_port)
        ah, ap = a.local

        def in_dialog(method, cseq, branch):
            a.send_raw(f"{method} {target} SIP/2.0\r\n"
                       f"Via: SIP/2.0/TCP {ah}:{ap};branch={branch}\r\n"
                       f"From: \"Office\" <sip:{OFFICE_USER}@127.0.0.2>;tag=t1\r\nTo: {to}\r\n"
                       f"Call-ID: moved-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
                       "Content-Length: 0\r\n\r\n")
        in_dialog("ACK", 1, "z9hG4bKmoved1ack")
        self.assertTrue(next_request(phone, "ACK").startswith("ACK "))
        calls = self.ctl.json("call", "list")["calls"]
        self.assertEqual([c["instance"] for c in calls], ["sip-edge-0"], calls)
        self.assertRegex(self.metrics(), r"(?m)^rwg_sip_edge_active_calls 1")
        in_dialog("BYE", 2, "z9hG4bKmoved1bye")
        reply(phone, next_request(phone, "BYE"), 200)
        r = a.read_message()
        self.assertEqual(sipclient.status(r), 200, r)
        self.assertRegex(r, r"(?im)^CSeq: 2 BYE")

        # Cancelled at B before the phone answers: the CANCEL follows the INVITE to A.
        invite("21002", "moved-2", "t2", "z9hG4bKmoved2")
        inv = next_request(phone, "INVITE")
        reply(phone, inv, 180, "Ringing", tag="p2")
        self.assertEqual(sipclient.status(answer_from_b()), 180)
        b.send_raw(f"CANCEL sip:21002@127.0.0.1:{self.b_icp};transport=tcp SIP/2.0\r\n"
                   f"Via: SIP/2.0/TCP {bh}:{bp};branch=z9hG4bKmoved2\r\n"
                   f"From: \"Office\" <sip:{OFFICE_USER}@127.0.0.2>;tag=t2\r\n"
                   f"To: <sip:21002@127.0.0.2>\r\nCall-ID: moved-2\r\nCSeq: 1 CANCEL\r\n"
                   "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        cancel = next_request(phone, "CANCEL")
        reply(phone, cancel, 200, contact=False)
        reply(phone, inv, 487, "Request Terminated", tag="p2", contact=False)
        try:
            self.assertTrue(next_request(phone, "ACK").startswith("ACK "))
        except Exception:
            print(self.edge.read_log()[-6000:])
            raise
        got = sorted((header(m, "CSeq"), sipclient.status(m))
                     for m in (b.read_message(), b.read_message()))
        self.assertEqual(got, [("1 CANCEL", 200), ("1 INVITE", 487)])
        rwgtest.wait_until("no call left", lambda: re.search(
            r"(?m)^rwg_sip_edge_active_calls 0", self.metrics()), timeout=5)

    def test_invite_cancelled_while_the_other_instance_reads_the_binding(self):
        """B holds the iPBX's INVITE while Redis (asleep) says who holds the phone; the iPBX
        cancels meanwhile. B answers 487, and once Redis answers the INVITE goes nowhere: A
        gets nothing, the phone is not called."""
        phone = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True, ca=self.certs["ca"])
        self.addCleanup(phone.close)
        r = phone.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
        self.assertEqual(sipclient.status(r), 200, r)
        rwgtest.wait_until("both instances advertised", lambda: b"sip-edge-0" in self.redis.cmd(
            "HKEYS", "rwg:edge:instances") and b"sip-edge-1" in self.redis.cmd(
            "HKEYS", "rwg:edge:instances"), timeout=10)
        time.sleep(1.5)  # B reads the instances once a second
        b = self.ipbx(self.b_icp)
        bh, bp = b.local

        def request(method, user, cid, branch, to_tag=""):
            b.send_raw(f"{method} sip:{user}@127.0.0.1:{self.b_icp};transport=tcp SIP/2.0\r\n"
                       f"Via: SIP/2.0/TCP {bh}:{bp};branch={branch}\r\n"
                       f"From: \"Office\" <sip:{OFFICE_USER}@127.0.0.2>;tag=t-{cid}\r\n"
                       f"To: <sip:{user}@127.0.0.2>{to_tag}\r\nCall-ID: {cid}\r\n"
                       f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                       f"Contact: <sip:{OFFICE_USER}@{bh}:{bp};transport=tcp>\r\n"
                       "Content-Length: 0\r\n\r\n")

        def final_from_b():
            r = b.read_message()
            while sipclient.status(r) < 200:
                r = b.read_message()
            return r

        sleeper = threading.Thread(target=lambda: self.redis.cmd("DEBUG", "SLEEP", "2"))
        sleeper.start()
        self.addCleanup(sleeper.join)
        time.sleep(0.2)
        request("INVITE", "21002", "held-1", "z9hG4bKheld1")
        time.sleep(0.3)
        request("CANCEL", "21002", "held-1", "z9hG4bKheld1")
        got = {}
        for _ in range(2):
            m = final_from_b()
            got[re.search(r"(?im)^CSeq: *1 +(\w+)", m).group(1)] = m
        self.assertEqual(sipclient.status(got["CANCEL"]), 200, got["CANCEL"])
        self.assertEqual(sipclient.status(got["INVITE"]), 487, got["INVITE"])
        to_tag = re.search(r"(?im)^To:.*(;tag=[^;\s]+)", got["INVITE"]).group(1)
        request("ACK", "21002", "held-1", "z9hG4bKheld1", to_tag)
        sleeper.join()
        # B's Redis commands are answered in order: once two lookups issued one after the other
        # are answered, the held INVITE's lookups are too.
        for i in range(2):
            request("INVITE", "21001", f"nobody-{i}", f"z9hG4bKnobody{i}")
            self.assertEqual(sipclient.status(final_from_b()), 480)
        self.assertEqual(phone.read_raw(1.0), b"", "the phone is not called")
        self.assertEqual(self.ctl.json("call", "list")["calls"], [])
        self.assertNotIn('msg="call proxied', self.edge_b.read_log())
        self.assertNotIn('msg=call ', self.edge.read_log())
