"""Integration: rwg with a Redis that speaks only TLS and requires client certificates.

redis-server with `--port 0 --tls-port P --tls-auth-clients yes` (no plaintext port at all).
control and sip-edge get --redis-ca-file and a client pair: an admin writes through control
(rwgctl), a phone registers through sip-edge (Kamailio as the iPBX) and its binding is read back
from Redis with redis-cli over TLS. A service given the wrong CA says why it cannot reach Redis.
After a SIGTERM, no tunnel socket directory is left behind.
"""
import glob
import os
import subprocess

import rwgtest
import sipclient

ADMIN_PASSWORD = "it-admin-password-1"
DOMAIN = "rwg.test"
USER, PHONE_PW, ICP, ICP_PW = "1001", "phone-pw-1001", "21001", "icp-pw-21001"


class RedisTlsTest(rwgtest.TempDirTest):

    def setUp(self):
        super().setUp()
        self.certs = rwgtest.make_certs(self.tmp)

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, cwd=self.tmp, capture_output=True)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=rwg", "-keyout", "client.key", "-out", "client.csr")
        openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", "client.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-subj", "/CN=other CA", "-keyout", "other.key", "-out", "other.pem")
        self.client_cert = os.path.join(self.tmp, "client.pem")
        self.client_key = os.path.join(self.tmp, "client.key")
        self.other_ca = os.path.join(self.tmp, "other.pem")
        self.port = rwgtest.free_port()
        self.redis_dir = os.path.join(self.tmp, "redis")
        os.mkdir(self.redis_dir)
        self.start_redis()
        self.addCleanup(self.stop_redis)
        self.key = os.path.join(self.tmp, "secret.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex())
        self.pw = os.path.join(self.tmp, "admin-password")
        with open(self.pw, "w") as f:
            f.write(ADMIN_PASSWORD)
        self.tunnels = os.path.join(self.tmp, "tunnels")
        os.mkdir(self.tunnels)

    def start_redis(self):
        """TLS only, client certificates required, AOF on (a restart keeps the data)."""
        d = self.redis_dir
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"],
             "--tls-ca-cert-file", self.certs["ca"], "--tls-auth-clients", "yes",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", d,
             "--logfile", os.path.join(d, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rwgtest.wait_until("redis over TLS", lambda: self.cli("PING") == ["PONG"])

    def stop_redis(self):
        if self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(timeout=10)

    def cli(self, *args):
        r = subprocess.run(
            ["redis-cli", "--tls", "--cacert", self.certs["ca"], "--cert", self.client_cert,
             "--key", self.client_key, "-h", "127.0.0.1", "-p", str(self.port), "--raw",
             *map(str, args)], capture_output=True, text=True, timeout=10)
        return [l for l in r.stdout.split("\n") if l] if r.returncode == 0 else None

    def redis_args(self, ca=None):
        return ["--redis-address", f"127.0.0.1:{self.port}",
                "--redis-ca-file", ca or self.certs["ca"],
                "--redis-cert-file", self.client_cert, "--redis-key-file", self.client_key]

    def service(self, name, args, expect_healthy=True):
        s = rwgtest.Service(name, self.tmp, args)
        s.env = {"TMPDIR": self.tunnels}
        s.start(expect_healthy=expect_healthy)
        self.addCleanup(s.stop)
        return s

    def start_control(self):
        self.control = self.service("control", self.redis_args() + [
            "--secret-key-file", self.key, "--admin-password-file", self.pw,
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]])
        self.ctl = rwgtest.Rwgctl(self.control.grpc_address, self.certs["ca"],
                                  os.path.join(self.tmp, "cli"))
        rwgtest.wait_until("control", lambda: self.ctl.run("health").stdout.strip() == "SERVING")
        self.ctl.ok("login", password=ADMIN_PASSWORD)

    def test_control_and_sip_edge_over_tls_only(self):
        self.start_control()
        kdir = os.path.join(self.tmp, "kamailio")
        os.mkdir(kdir)
        kamailio = rwgtest.Kamailio(kdir, "127.0.0.2", {ICP: ICP_PW}).start()
        self.addCleanup(kamailio.stop)
        self.ctl.ok("config", "set", f"public_name={DOMAIN}", "icp.host=127.0.0.2",
                    f"icp.sip_port={kamailio.port}", "icp.sip_transports=tcp",
                    "licences.teleworker=5")
        self.ctl.ok("device", "add", "--set-username", USER, "--set-password", PHONE_PW,
                    "--icp-username", ICP, "--icp-password", ICP_PW, "--location", "FR/Paris")
        # What control wrote is in the TLS-only Redis.
        self.assertIn(USER, self.cli("HKEYS", "rwg:devices") or [])

        tcp_port = rwgtest.free_port()
        edge = self.service("sip-edge", self.redis_args() + [
            "--secret-key-file", self.key,
            "--sip-tls-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--sip-tcp-listen", f"127.0.0.1:{tcp_port}",
            "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--sip-tls-cert-file", self.certs["cert"], "--sip-tls-key-file", self.certs["key"]])
        phone = sipclient.SipConnection("127.0.0.1", tcp_port, timeout=10)
        self.addCleanup(phone.close)
        r = phone.register_with_auth(USER, PHONE_PW, DOMAIN, expires=600)
        self.assertEqual(sipclient.status(r), 200, r)
        binding = self.cli("GET", f"rwg:reg:{USER}")
        self.assertTrue(binding and f'"source":"127.0.0.1:{phone.local[1]}"' in binding[0],
                        binding)
        self.assertIn(USER, self.ctl.ok("registration", "list"))

        for s in (edge, self.control):
            self.assertNotIn("Redis TLS connection failed", s.read_log())

        # Redis restarted: the services connect again over TLS and go on.
        self.stop_redis()
        self.start_redis()

        def registers_again():
            c = sipclient.SipConnection("127.0.0.1", tcp_port, timeout=10)
            try:
                return sipclient.status(c.register_with_auth(USER, PHONE_PW, DOMAIN,
                                                             expires=600)) == 200
            finally:
                c.close()
        rwgtest.wait_until("a registration after Redis's restart", registers_again, timeout=30)
        rwgtest.wait_until("control after Redis's restart",
                           lambda: self.ctl.run("device", "list").returncode == 0)
        self.assertIn(USER, self.ctl.ok("device", "list"))
        self.assertEqual(edge.stop(), 0)
        self.assertEqual(self.control.stop(), 0)
        self.assertEqual(glob.glob(os.path.join(self.tunnels, "*")), [],
                         "tunnel directories left behind")

    def test_wrong_ca_is_reported(self):
        control = self.service("control", self.redis_args(ca=self.other_ca) + [
            "--secret-key-file", self.key, "--admin-password-file", self.pw,
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]],
            expect_healthy=False)
        rwgtest.wait_until("the reason in control's log", lambda: "Redis TLS connection failed"
                           in control.read_log())
        log = control.read_log()
        self.assertIn("certificate is refused for 127.0.0.1", log)
        self.assertIn("self-signed certificate in certificate chain", log)
        ctl = rwgtest.Rwgctl(control.grpc_address, self.certs["ca"],
                             os.path.join(self.tmp, "cli"))
        self.assertNotEqual(ctl.run("health").stdout.strip(), "SERVING")

    def test_bad_option_stops_the_service_at_start(self):
        s = rwgtest.Service("control", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.port}", "--redis-ca-file",
            os.path.join(self.tmp, "missing.pem"), "--secret-key-file", self.key,
            "--admin-password-file", self.pw])
        self.addCleanup(s.stop)
        with self.assertRaises(AssertionError) as e:
            s.start()
        self.assertIn("redis-ca-file", str(e.exception))


if __name__ == "__main__":
    import unittest
    unittest.main()
