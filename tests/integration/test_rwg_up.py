"""Integration: what the README tells a new user to do works as written.

`./tools/rwg up` is run as it is (on ports and a state directory of the test's own), two real
phones (baresip) register through it over TLS with the demo devices, one calls the other by
its iPBX number, both hear each other, the caller hangs up; the sync API and the ott service
(OTT access: a domain added and listed with rwgctl, its FQDN refused at the TLS handshake
while it has no certificate) answer; then `./tools/rwg down`. Nothing
may be left behind: no call in `rwgctl call list`, no media relay session, no process.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import rwgtest
from test_calls import TONE_A, TONE_B, Baresip, tones_heard

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
RWG = os.path.join(ROOT, "tools", "rwg")


@unittest.skipUnless(shutil.which("baresip") and shutil.which("kamailio"),
                     "baresip and kamailio are installed by tools/rwg deps")
class RwgUpTest(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="rwg-up-")
        self.tmp = self._tmp.name
        self.addCleanup(self._tmp.cleanup)
        self.state = os.path.join(self.tmp, "state")
        port = rwgtest.free_port
        # Below the kernel's ephemeral ports, which other tests' sockets take.
        relay_min = 26000 + (os.getpid() % 20) * 200
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("RWG_") and k != "RWG_BIN_DIR":
                del self.env[k]
        self.env.update({
            "RWG_BUILD_DIR": os.path.dirname(os.path.abspath(rwgtest.BIN)),
            "RWG_STATE_DIR": self.state,
            "RWG_REDIS_PORT": str(port()),
            "RWG_CONTROL_ADDR": f"127.0.0.1:{port()}",
            "RWG_CONTROL_METRICS": f"127.0.0.1:{port()}",
            "RWG_EDGE_TLS": f"127.0.0.1:{port()}",
            "RWG_EDGE_TCP": f"127.0.0.1:{port()}",
            "RWG_EDGE_ICP": f"127.0.0.1:{port()}",
            "RWG_EDGE_GRPC": f"127.0.0.1:{port()}",
            "RWG_EDGE_METRICS": f"127.0.0.1:{port()}",
            "RWG_RELAY_GRPC": f"127.0.0.1:{port()}",
            "RWG_RELAY_METRICS": f"127.0.0.1:{port()}",
            "RWG_RELAY_PORTS": f"{relay_min}-{relay_min + 199}",
            "RWG_PROV_HTTPS": f"127.0.0.1:{port()}",
            "RWG_PROV_GRPC": f"127.0.0.1:{port()}",
            "RWG_PROV_METRICS": f"127.0.0.1:{port()}",
            "RWG_SYNC_HTTPS": f"127.0.0.1:{port()}",
            "RWG_SYNC_GRPC": f"127.0.0.1:{port()}",
            "RWG_SYNC_METRICS": f"127.0.0.1:{port()}",
            "RWG_TMA_GRPC": f"127.0.0.1:{port()}",
            "RWG_TMA_METRICS": f"127.0.0.1:{port()}",
            "RWG_OTT_HTTPS": f"127.0.0.1:{port()}",
            "RWG_OTT_GRPC": f"127.0.0.1:{port()}",
            "RWG_OTT_METRICS": f"127.0.0.1:{port()}",
            "RWG_IPBX_PORT": str(port()),
        })
        self.out = open(os.path.join(self.tmp, "up.out"), "w+b")
        self.up = subprocess.Popen([RWG, "up"], env=self.env, stdout=self.out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.addCleanup(self.cleanup)
        rwgtest.wait_until("rwg up running", lambda: b"rwg is running" in self.output()
                           or self.up.poll() is not None, timeout=240)
        self.assertIsNone(self.up.poll(), "rwg up exited:\n" + self.output().decode()[-4000:])

    def output(self):
        self.out.flush()
        with open(self.out.name, "rb") as f:
            return f.read()

    def cleanup(self):
        if self.up.poll() is None:
            subprocess.run([RWG, "down"], env=self.env, capture_output=True, timeout=120)
            try:
                self.up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.up.pid, signal.SIGKILL)
        self.out.close()

    def log(self, name):
        try:
            with open(os.path.join(self.state, "log", f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def metrics(self, var):
        return urllib.request.urlopen(f"http://{self.env[var]}/metrics", timeout=5).read().decode()

    def ctl(self, *args, output="json"):
        env = dict(self.env)
        env.update({"RWG_SERVER": self.env["RWG_CONTROL_ADDR"],
                    "RWG_TMA_SERVER": self.env["RWG_TMA_GRPC"],
                    "RWG_OTT_SERVER": self.env["RWG_OTT_GRPC"],
                    "RWG_CA_CERT": os.path.join(self.state, "dev", "ca.pem"),
                    "RWG_CONFIG_DIR": os.path.join(self.tmp, "cli")})
        with open(os.path.join(self.state, "dev", "admin-password")) as f:
            env["RWG_PASSWORD"] = f.read().strip()
        r = subprocess.run([os.path.join(rwgtest.BIN, "rwgctl"), "-o", output, *args], env=env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"rwgctl {' '.join(args)}: {r.stdout} {r.stderr}")
        return r.stdout

    def phone(self, name, user, tone, password=None):
        tls = self.env["RWG_EDGE_TLS"]
        p = Baresip(self.tmp, name,
                    f"<sip:{user}@localhost;transport=tls>;auth_pass={password or 'demo-set-' + user};"
                    f"outbound=\"sip:{tls};transport=tls\";regint=600;mediaenc=srtp-mand;"
                    "answermode=auto;audio_codecs=PCMU",
                    os.path.join(self.state, "dev", "ca.pem"), tone, "tls")
        self.addCleanup(p.stop)
        return p.start()

    def relay_sessions(self):
        m = re.search(r"(?m)^rwg_media_relay_sessions (\S+)", self.metrics("RWG_RELAY_METRICS"))
        return int(float(m.group(1))) if m else -1

    def dump(self, *phones):
        return ("\n--- sip-edge\n" + self.log("sip-edge")[-4000:] + "\n--- kamailio\n" +
                self.log("kamailio")[-2000:] + "".join(
                    f"\n--- {p.dir}\n" + p.read_log()[-3000:] for p in phones))

    def deploy_demo_phones(self):
        """The seed's flow on up's stack: the demo site's CSV from the declared devices, deployed
        to the local store with the CA certificate; each phone (curl) fetches its <MAC>.cfg over
        HTTPS under the hash. Returns {user: the file's parameters}."""
        csv_text = self.ctl("tma", "csv", "--site", "demo", output="table")
        self.assertIn("08000F001001", csv_text)
        csv_path = os.path.join(self.tmp, "rw.csv")
        with open(csv_path, "w") as f:
            f.write(csv_text)
        cert = os.path.join(self.tmp, "CA_Mitel.pem")
        shutil.copy(os.path.join(self.state, "dev", "ca.pem"), cert)
        out = self.ctl("tma", "deploy", "--server", "local", "--csv", csv_path, "--certificate",
                       cert, output="table")
        self.assertIn("Deployment completed", out)
        key = json.loads(self.ctl("hash", "show"))["key"]
        params = {}
        for user in ("1001", "1002"):
            got = subprocess.run(
                ["curl", "-sS", "--fail", "--cacert", os.path.join(self.state, "dev", "ca.pem"),
                 f"https://{self.env['RWG_PROV_HTTPS']}/{key}/ftp_67xxi/08000F00{user}.cfg"],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(got.returncode, 0, got.stderr)
            p = {}
            for line in got.stdout.splitlines():
                if line.strip() and not line.startswith("#"):
                    name, _, value = line.lstrip("!").partition(":")
                    p[name.strip()] = value.strip()
            self.assertEqual(p["sip line1 user name"], user)
            self.assertEqual(p["sip line1 auth name"], user)
            self.assertEqual(p["https path"], f"{key}/ftp_67xxi")
            self.assertEqual(p["sip transport protocol"], "4")
            params[user] = p
        return params

    def test_two_demo_phones_call_each_other_through_rwg_up(self):
        self.ctl("login")
        cfg = self.deploy_demo_phones()
        # The phones register with what their files say.
        a = self.phone("phone-1001", cfg["1001"]["sip line1 auth name"], TONE_A,
                       cfg["1001"]["sip line1 password"])
        b = self.phone("phone-1002", cfg["1002"]["sip line1 auth name"], TONE_B,
                       cfg["1002"]["sip line1 password"])
        registered = lambda: {r["set_username"] for r in
                              json.loads(self.ctl("registration", "list"))["registrations"]}
        try:
            rwgtest.wait_until("both demo phones registered",
                               lambda: registered() >= {"1001", "1002"}, timeout=30)
        except AssertionError:
            raise AssertionError("not registered" + self.dump(a, b))
        # The inventory knows they fetched their files (provisioning writes fetches to Redis
        # once a second) and are registered now.
        inventory = lambda: json.loads(self.ctl("tma", "inventory"))["entries"]
        rwgtest.wait_until("the inventory shows both phones fetched", lambda: all(
            int(e["fetched_unix_ms"]) >= int(e["deployed_unix_ms"]) for e in inventory()),
            timeout=10)
        entries = inventory()
        self.assertEqual(sorted(e["device"] for e in entries), ["1001", "1002"])
        for e in entries:
            self.assertEqual(e["state"], "PHONE_STATE_CONNECTED", entries)
            self.assertTrue(e["connected"])

        # 1001 dials 1002's number at the iPBX: the call leaves rwg to the iPBX and comes back.
        a.command("dial", "21002")
        calls = lambda: json.loads(self.ctl("call", "list"))["calls"]
        try:
            rwgtest.wait_until("both legs confirmed", lambda: len(calls()) == 2 and all(
                c["state"] == "confirmed" for c in calls()), timeout=20)
        except AssertionError:
            raise AssertionError(f"call not answered: {calls()}" + self.dump(a, b))
        self.assertEqual(self.relay_sessions(), 2)
        time.sleep(3)
        a.command("hangup")
        try:
            rwgtest.wait_until("no call left", lambda: calls() == [], timeout=15)
            rwgtest.wait_until("both phones ended the call",
                               lambda: a.call_ended() and b.call_ended(), timeout=10)
        except AssertionError:
            raise AssertionError(f"call not ended: {calls()}" + self.dump(a, b))
        rwgtest.wait_until("no relay session left", lambda: self.relay_sessions() == 0,
                           timeout=10)
        time.sleep(0.5)
        for phone, own, other in ((a, TONE_A, TONE_B), (b, TONE_B, TONE_A)):
            recs = phone.recordings()
            self.assertTrue(recs, f"{phone.dir}: no recording")
            pa, pb, peak = tones_heard(recs[-1])
            heard, not_heard = (pa, pb) if other == TONE_A else (pb, pa)
            self.assertGreater(peak, 1000, f"{recs[-1]} is silent")
            self.assertGreater(heard, 0.5, f"{phone.dir} did not hear {other} Hz ({pa}, {pb})")
            self.assertLess(not_heard, 0.1, f"{phone.dir} hears its own tone ({pa}, {pb})")
        self.assertNotIn("Socket closed", self.log("sip-edge"))

        # The sync API is up: a consumer is added as the banner says, and an unsigned call is
        # refused the OAuth way (tests/integration/test_sync.py signs with real clients).
        self.assertIn("rwgctl sync consumer add", self.output().decode())
        consumer = json.loads(self.ctl("sync", "consumer", "add", "mivoice", "--source",
                                       "127.0.0.1"))
        self.assertEqual(len(consumer["secret"]), 40)
        ctx = ssl.create_default_context(cafile=os.path.join(self.state, "dev", "ca.pem"))
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"https://{self.env['RWG_SYNC_HTTPS']}/api/v1/devices",
                                   context=ctx, timeout=10)
        self.assertEqual(refused.exception.code, 401)
        self.assertTrue(refused.exception.headers["WWW-Authenticate"].startswith("OAuth"))
        self.assertIn("oauth_problem=parameter_absent", refused.exception.read().decode())

        # ott runs, reached as the banner says: a domain is added and listed through its admin
        # API; without a certificate in the state's ott-certs its FQDN gets no TLS session.
        out = self.output().decode()
        self.assertIn(self.env["RWG_OTT_HTTPS"], out)
        self.assertIn("rwgctl ott domain list", out)
        self.assertTrue(os.path.isdir(os.path.join(self.state, "ott-certs")))
        self.assertEqual(json.loads(self.ctl("ott", "domain", "list")).get("domains", []), [])
        self.ctl("ott", "domain", "add", "portal.example.com", "--service", "user-portal",
                 "--backend", "127.0.0.1:1", output="table")
        domains = json.loads(self.ctl("ott", "domain", "list"))["domains"]
        self.assertEqual([(d["fqdn"], d["service"], d["enabled"], d["has_certificate"])
                          for d in domains],
                         [("portal.example.com", "SERVICE_USER_PORTAL", True, False)])
        self.assertIn("user-portal", self.ctl("ott", "service", "list", output="table"))
        host, port = self.env["RWG_OTT_HTTPS"].rsplit(":", 1)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                with ssl.create_default_context().wrap_socket(
                        raw, server_hostname="portal.example.com"):
                    pass
        self.ctl("ott", "domain", "delete", "portal.example.com", output="table")
        self.assertIn("rwg_ott_connections_open", self.metrics("RWG_OTT_METRICS"))

        # ./tools/rwg down stops everything `up` started; `up` returns.
        r = subprocess.run([RWG, "down"], env=self.env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.up.wait(timeout=30), 0, self.output().decode()[-2000:])
        for name in ("redis", "control", "kamailio", "sip-edge", "media-relay", "provisioning",
                     "sync", "tma", "ott"):
            self.assertFalse(os.path.exists(os.path.join(self.state, "run", f"{name}.pid")),
                             f"{name} pid file left")


if __name__ == "__main__":
    unittest.main()
