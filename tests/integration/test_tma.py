"""Integration: deployments (R-TMA) end to end with real programs: redis-server, control,
provisioning (the local store, phones fetching over HTTPS as curl), tma, rwgctl, and real FTP
servers (Debian's python3-pyftpdlib, plain and explicit TLS). Every file is checked byte for
byte where it lands; after each case nothing is left half written.

Run with Debian's python3 (/usr/bin/python3), which has pyftpdlib."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import unittest

import rwgtest

ADMIN_PASSWORD = "it-admin-password-1"

FTP_SERVER = r'''
import sys, time
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer
root, port, user, password, cert, key, delay = sys.argv[1:8]
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm="elradfmwMT")
base = TLS_FTPHandler if cert else FTPHandler
class handler(base):
    def ftp_RNTO(self, path):
        # A server as slow as one across a WAN: the whole (one-threaded) server waits.
        if float(delay) > 0:
            time.sleep(float(delay))
        return super().ftp_RNTO(path)
if cert:
    handler.certfile = cert
    handler.keyfile = key
    handler.tls_control_required = True
    handler.tls_data_required = True
handler.authorizer = authorizer
server = FTPServer(("127.0.0.1", int(port)), handler)
server.max_cons = 256
server.serve_forever()
'''


class FtpServer:
    def __init__(self, root, user="mngt_ftp_67xxi", password="ftp-pass-1", tls_certs=None,
                 port=None, rename_delay=0.0):
        """rename_delay: seconds the server waits before each rename (each file tma puts),
        so that a test can interrupt a deployment part-way however fast tma is."""
        self.root, self.user, self.password, self.tls = root, user, password, tls_certs
        self.rename_delay = rename_delay
        self.port = port or rwgtest.free_port()
        self.proc = None

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        cert = self.tls["cert"] if self.tls else ""
        key = self.tls["key"] if self.tls else ""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FTP_SERVER, self.root, str(self.port), self.user,
             self.password, cert, key, str(self.rename_delay)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rwgtest.wait_until("ftp server", self.listening)
        return self

    def listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def parse_cfg(text):
    """A phone configuration file as {name: (value, locked)}; fails on a line that is neither a
    parameter, a comment nor blank."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^(!?)([a-z0-9 ]+):\s?(.*)$", line)
        assert m, f"not a parameter line: {line!r}"
        out[m.group(2).strip()] = (m.group(3), m.group(1) == "!")
    return out


class TmaFixture(rwgtest.TempDirTest):
    TMA_ARGS = []

    def setUp(self):
        super().setUp()
        self.certs = rwgtest.make_certs(self.tmp)
        rwgtest.start_control(self, ADMIN_PASSWORD)
        self.ctl.ok("config", "set", "public_name=rwg.example.com", "icp.host=127.0.0.1")
        self.hash = self.ctl.json("hash", "generate")["key"]
        self.store = os.path.join(self.tmp, "store")
        os.mkdir(self.store)
        self.store_token = os.path.join(self.tmp, "store-token")
        with open(self.store_token, "w") as f:
            f.write(os.urandom(20).hex())
        self.prov_port = rwgtest.free_port()
        self.prov = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{self.prov_port}", "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"], "--store-dir", self.store,
            "--api-token-file", self.store_token, "--tls-cert-file", self.certs["cert"],
            "--tls-key-file", self.certs["key"]]).start()
        self.addCleanup(self.prov.stop)
        self.start_tma()
        self.ctl.env["RWG_TMA_SERVER"] = self.tma.grpc_address

    def start_tma(self, extra=()):
        self.tma = rwgtest.Service("tma", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"],
            "--store-address", self.prov.grpc_address, "--store-token-file", self.store_token,
            "--store-ca-file", self.certs["ca"], "--lease-seconds", "3"] + self.TMA_ARGS +
            list(extra))
        if hasattr(self, "tma_port"):
            self.tma.grpc_listen = f"127.0.0.1:{self.tma_port}"
        self.tma.start()
        self.tma_port = self.tma.ports["grpc"]
        self.addCleanup(self.stop_tma)

    def stop_tma(self):
        if self.tma.alive():
            self.assertEqual(self.tma.stop(), 0, "tma must exit 0 on SIGTERM")

    def declare(self, count, site="paris", prefix="1", mac_base=0x0800A1000000):
        """`count` devices with MACs; returns [(user, password, MAC)]."""
        rows = ["set_username,set_password,icp_username,icp_password,description,mac,site,"
                "location,srtp_optional"]
        out = []
        for i in range(count):
            user = f"{prefix}{i:04d}"
            mac = f"{mac_base + int(prefix) * 100000 + i:012X}"
            pw = f"set-pw-{user}-Secret"
            rows.append(f"{user},{pw},2{user},icp-{user},desk {i},{mac},{site},FR,no")
            out.append((user, pw, mac))
        path = os.path.join(self.tmp, f"devices-{prefix}.csv")
        with open(path, "w") as f:
            f.write("\n".join(rows) + "\n")
        self.ctl.ok("device", "import", path)
        return out

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)
        return path

    def deploy(self, *args, ok=True, timeout=600, json_output=False):
        r = self.ctl.run(*(("-o", "json") if json_output else ()), "tma", "deploy", *args,
                         timeout=timeout)
        if ok and r.returncode != 0:
            raise AssertionError(f"deploy failed: {r.stdout}\n{r.stderr}")
        return r

    def fetch(self, name):
        """The file as a phone gets it over HTTPS under the hash."""
        return subprocess.run(
            ["curl", "-sS", "--fail", "--cacert", self.certs["ca"],
             f"https://127.0.0.1:{self.prov_port}/{self.hash}/ftp_67xxi/{name}"],
            capture_output=True, timeout=30)

    def deployments(self):
        return self.ctl.json("tma", "deployment", "list").get("deployments", [])

    def no_temp_files(self, directory):
        left = [n for n in os.listdir(directory) if ".rwg-tmp-" in n or n.startswith(".")]
        self.assertEqual(left, [], "temporary files left behind")


class LocalDeploymentTest(TmaFixture):
    def test_seed_flow_csv_deploy_fetch_parse_inventory(self):
        phones = self.declare(3)
        self.ctl.ok("tma", "server", "add", "local", "--kind", "local", "--site", "paris")
        csv_text = self.ctl.ok("tma", "csv", "--site", "paris")
        self.assertTrue(csv_text.startswith(
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password"), csv_text)
        csv_path = self.write("rw.csv", csv_text)
        ca = self.write("CA_Mitel.pem", rwgtest.read_bytes(self.certs["ca"]))
        r = self.deploy("--server", "local", "--csv", csv_path, "--certificate", ca)
        self.assertIn("Deployment completed", r.stdout)
        # The certificate and one file per phone, in the store, whole; nothing else.
        self.assertEqual(sorted(os.listdir(self.store)),
                         sorted(["CA_Mitel.pem"] + [f"{m}.cfg" for _, _, m in phones]))
        self.assertEqual(rwgtest.read_bytes(os.path.join(self.store, "CA_Mitel.pem")),
                         rwgtest.read_bytes(ca))
        inv = self.ctl.json("tma", "inventory").get("entries", [])
        self.assertEqual(len(inv), 3)
        self.assertTrue(all(e.get("state", "PHONE_STATE_DEPLOYED") == "PHONE_STATE_DEPLOYED"
                            for e in inv), inv)
        # A phone fetches its file over 4445 under the hash (the MAC in lower case works too).
        user, pw, mac = phones[1]
        got = self.fetch(f"{mac.lower()}.cfg")
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(got.stdout, rwgtest.read_bytes(os.path.join(self.store, f"{mac}.cfg")))
        cfg = parse_cfg(got.stdout.decode())
        self.assertEqual(cfg["sip line1 user name"], (user, True))
        self.assertEqual(cfg["sip line1 auth name"], (user, True))
        self.assertEqual(cfg["sip line1 password"], (pw, False))
        self.assertEqual(cfg["sip proxy ip"][0], "rwg.example.com")
        self.assertEqual(cfg["sip registrar ip"][0], "rwg.example.com")
        self.assertEqual(cfg["https server"][0], "rwg.example.com")
        self.assertEqual(cfg["https path"][0], f"{self.hash}/ftp_67xxi")
        self.assertEqual(cfg["sip transport protocol"][0], "4")
        self.assertEqual(cfg["sip proxy port"][0], "5061")
        self.assertEqual(cfg["download protocol"][0], "HTTPS")
        self.assertEqual(cfg["https port"][0], "4445")
        # The fetch is in the inventory within a few seconds (provisioning records it).
        def fetched():
            e = self.ctl.json("tma", "inventory", "--mac", mac).get("entries", [])
            return e and e[0].get("state") == "PHONE_STATE_FETCHED"
        rwgtest.wait_until("fetched in the inventory", fetched, timeout=10)
        self.assertEqual(len(self.ctl.json("tma", "inventory", "--state", "deployed")
                             .get("entries", [])), 2)
        # Events: created, started, each file, completed, in order.
        events = self.ctl.json("tma", "events").get("events", [])
        actions = [e["action"] for e in events]
        self.assertEqual(actions[0], "deployment.created")
        self.assertEqual(actions[-1], "deployment.completed")
        self.assertEqual(actions.count("file.written"), 4)
        seqs = [int(e["seq"]) for e in events]
        self.assertEqual(seqs, sorted(seqs))

        # The same CSV again writes nothing; one change writes one file.
        r = self.deploy("--server", "local", "--csv", csv_path, "--certificate", ca,
                        json_output=True)
        self.assertIn('"files_unchanged": 4', r.stdout)
        before = os.stat(os.path.join(self.store, f"{phones[0][2]}.cfg")).st_mtime_ns
        lines = csv_text.splitlines()
        lines[2] = lines[2].rsplit(",", 1)[0] + ",another-password-1"  # phones[1]'s row
        changed = self.write("rw2.csv", "\n".join(lines) + "\n")
        r = self.deploy("--server", "local", "--csv", changed, "--certificate", ca,
                        json_output=True)
        self.assertIn('"files_unchanged": 3', r.stdout)
        self.assertEqual(os.stat(os.path.join(self.store, f"{phones[0][2]}.cfg")).st_mtime_ns,
                         before)
        self.assertIn(b"another-password-1",
                      rwgtest.read_bytes(os.path.join(self.store, f"{phones[1][2]}.cfg")))

        # Delete one from the inventory: its file goes from the store, phones get 404.
        self.ctl.ok("tma", "inventory", "delete", "--mac", mac, "--yes")
        self.assertFalse(os.path.exists(os.path.join(self.store, f"{mac}.cfg")))
        self.assertNotEqual(self.fetch(f"{mac}.cfg").returncode, 0)
        self.assertEqual(len(self.ctl.json("tma", "inventory").get("entries", [])), 2)
        self.assertEqual(self.redis.cli("HGET", "rwg:prov:fetched", mac), [])

    def test_bad_csv_rows_are_all_named_and_nothing_is_deployed(self):
        phones = self.declare(3)
        self.ctl.ok("tma", "server", "add", "local", "--kind", "local")
        u0, u1, u2 = (p[0] for p in phones)
        bad = "\n".join([
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password,Bad Header",
            f"08:00:0F:00:00:01,{u0},{u0},{phones[0][1]},x",    # 2: bad header reported on 1
            f"08-00-0F-00-00-01,{u1},{u1},{phones[1][1]},x",    # 3: repeated MAC
            f"08000F00000G,{u2},{u2},{phones[2][1]},x",         # 4: not hex
            "08000F000003,nobody,nobody,whatever,x",            # 5: not a declared device
            f"08000F000004,,{u0},pw,x",                         # 6: empty user name
            f"08000F000005,{u1},{u1},pw\x01x,x",                 # 7: control character
        ]) + "\n"
        path = self.write("bad.csv", bad)
        r = self.deploy("--server", "local", "--csv", path, ok=False)
        self.assertNotEqual(r.returncode, 0)
        msg = r.stderr
        for where in ("row 1", "row 3", "row 4", "row 5", "row 6", "row 7"):
            self.assertIn(where, msg)
        self.assertIn("MAC ADDRESS", msg)
        self.assertIn("sip line1 user name", msg)
        self.assertEqual(os.listdir(self.store), [])
        self.assertEqual(self.deployments(), [])
        # Non-UTF-8 and an empty file are refused the same way.
        r = self.deploy("--server", "local", "--csv", self.write("latin1.csv", (
            "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\n"
            f"08000F000009,{u0},{u0},p\xe9\n").encode("latin-1")), ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("row 2", r.stderr)
        r = self.deploy("--server", "local", "--csv", self.write("empty.csv", ""), ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.deployments(), [])
        # A password that is not the device's is a warning, not an error.
        warn = self.write("warn.csv",
                          "MAC ADDRESS,!sip line1 user name,!sip line1 auth name,"
                          f"sip line1 password\n08000F00000A,{u0},{u0},not-the-password\n")
        check = self.ctl.run("tma", "check", warn)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("password", check.stdout)

    def test_api_refuses_without_an_admin_token(self):
        r = self.ctl.run("tma", "server", "list",
                         env={"RWG_CONFIG_DIR": os.path.join(self.tmp, "nobody")})
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr.lower(), "login|unauthenticated|token")


class FtpDeploymentTest(TmaFixture):
    def setUp(self):
        super().setUp()
        self.ftp_root = os.path.join(self.tmp, "ftp")
        self.ftp = FtpServer(self.ftp_root).start()
        self.addCleanup(lambda: self.ftp.stop())
        pw = self.write("ftp.pass", self.ftp.password + "\n")
        self.ctl.ok("tma", "server", "add", "remote", "--kind", "ftp", "--address", "127.0.0.1",
                    "--port", str(self.ftp.port), "--password-file", pw, "--site", "paris")

    def expected(self, phones):
        return {f"{m}.cfg" for _, _, m in phones}

    def slow_server(self):
        """The server again on its port, taking 4 ms per file (at most 250 files/s), so that
        a deployment of 1,500 lasts seconds and can be interrupted part-way."""
        self.ftp.stop()
        self.ftp = FtpServer(self.ftp_root, port=self.ftp.port, rename_delay=0.004).start()

    def test_files_land_byte_for_byte_and_passwords_stay_secret(self):
        phones = self.declare(5)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        firmware = self.write("6867i.st", os.urandom(3 << 20))
        r = self.deploy("--server", "remote", "--csv", csv_path, "--firmware", firmware)
        self.assertIn("Deployment completed", r.stdout)
        self.assertEqual(set(os.listdir(self.ftp_root)), self.expected(phones) | {"6867i.st"})
        self.assertEqual(rwgtest.read_bytes(os.path.join(self.ftp_root, "6867i.st")),
                         rwgtest.read_bytes(firmware))
        inv = {e["mac"]: e for e in self.ctl.json("tma", "inventory").get("entries", [])}
        for user, pw, mac in phones:
            body = rwgtest.read_bytes(os.path.join(self.ftp_root, f"{mac}.cfg"))
            self.assertEqual(inv[mac]["sha256"], hashlib.sha256(body).hexdigest())
            self.assertEqual(parse_cfg(body.decode())["sip line1 password"][0], pw)
        # The FTP password is nowhere in Redis in clear, nor in the logs, nor listed.
        self.assertNotIn(self.ftp.password, self.tma.read_log())
        dump = "".join(self.redis.cli("HGETALL", "rwg:tma:servers"))
        self.assertNotIn(self.ftp.password, dump)
        self.assertNotIn(self.ftp.password, self.ctl.ok("-o", "json", "tma", "server", "list"))
        # Delete all from the inventory: the files go from the FTP server.
        self.ctl.ok("tma", "inventory", "delete", "--all", "--yes")
        self.assertEqual(set(os.listdir(self.ftp_root)), {"6867i.st"})
        self.assertEqual(self.ctl.json("tma", "inventory").get("entries", []), [])

    def test_ftp_server_stopped_mid_deployment_then_resumed(self):
        self.slow_server()
        phones = self.declare(1500)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        out = self.ctl.json("tma", "deploy", "--server", "remote", "--csv", csv_path, "--detach")
        dep = out["id"]
        rwgtest.wait_until("some files written",
                           lambda: len(os.listdir(self.ftp_root)) > 100, timeout=60)
        self.ftp.stop()
        def ended():
            d = self.ctl.json("tma", "deployment", "show", dep)
            return d.get("state") in ("DEPLOYMENT_STATE_FAILED", "DEPLOYMENT_STATE_COMPLETED")
        rwgtest.wait_until("deployment failed", ended, timeout=120)
        d = self.ctl.json("tma", "deployment", "show", dep)
        self.assertEqual(d["state"], "DEPLOYMENT_STATE_FAILED")
        self.assertTrue(d.get("error"), d)
        # Every file on the server is whole (what it should be). An upload the dying server
        # was receiving may have left its temporary file (nothing can remove it while the
        # server is down): the resumed deployment removes it (checked below).
        written = [n for n in os.listdir(self.ftp_root) if ".rwg-tmp-" not in n]
        self.assertLess(len(written), 1500)
        by_mac = {m: (u, pw) for u, pw, m in phones}
        for name in written:
            cfg = parse_cfg(rwgtest.read_bytes(os.path.join(self.ftp_root, name)).decode())
            u, pw = by_mac[name[:-4]]
            self.assertEqual(cfg["sip line1 password"][0], pw)
        # The server back, the deployment resumed: only what was left is written.
        self.ftp = FtpServer(self.ftp_root, port=self.ftp.port).start()
        self.ctl.ok("tma", "deployment", "resume", dep)
        rwgtest.wait_until("resumed deployment ended", ended, timeout=180)
        d = self.ctl.json("tma", "deployment", "show", dep)
        self.assertEqual(d["state"], "DEPLOYMENT_STATE_COMPLETED", d)
        self.assertEqual(int(d["files_done"]), 1500)
        self.assertEqual(set(os.listdir(self.ftp_root)), self.expected(phones))
        self.no_temp_files(self.ftp_root)

    def test_tma_killed_mid_deployment_carries_on_without_duplicates(self):
        self.slow_server()
        phones = self.declare(2000)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        dep = self.ctl.json("tma", "deploy", "--server", "remote", "--csv", csv_path,
                            "--detach")["id"]
        rwgtest.wait_until("some files written",
                           lambda: len(os.listdir(self.ftp_root)) > 200, timeout=60)
        self.tma.proc.send_signal(signal.SIGKILL)
        self.tma.proc.wait()
        self.tma.stop()
        self.start_tma()
        def ended():
            d = self.ctl.json("tma", "deployment", "show", dep)
            return d.get("state") == "DEPLOYMENT_STATE_COMPLETED"
        rwgtest.wait_until("deployment carried on", ended, timeout=180)
        d = self.ctl.json("tma", "deployment", "show", dep)
        self.assertEqual(int(d["files_done"]), 2000)
        self.assertEqual(set(os.listdir(self.ftp_root)), self.expected(phones))
        self.no_temp_files(self.ftp_root)
        events = []
        after = 0
        while True:
            page = self.ctl.json("tma", "events", "--deployment", dep, "--limit", "10000")
            page = [e for e in page.get("events", []) if int(e["seq"]) > after]
            if not page:
                break
            events += page
            after = int(page[-1]["seq"])
            break
        written = [e["file"] for e in events if e["action"] == "file.written"]
        self.assertEqual(len(written), 2000)
        self.assertEqual(len(set(written)), 2000)
        self.assertEqual(len(self.ctl.json("tma", "inventory").get("entries", [])), 2000)

    def test_sigterm_mid_deployment_ends_watches_and_the_next_start_carries_on(self):
        self.slow_server()
        phones = self.declare(1500)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        dep = self.ctl.json("tma", "deploy", "--server", "remote", "--csv", csv_path,
                            "--detach")["id"]
        watch = subprocess.Popen(
            [os.path.join(rwgtest.BIN, "rwgctl"), "tma", "deployment", "watch", dep],
            env=self.ctl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: watch.poll() is None and watch.kill())
        rwgtest.wait_until("some files written",
                           lambda: len(os.listdir(self.ftp_root)) > 100, timeout=60)
        started = time.monotonic()
        self.assertEqual(self.tma.stop(), 0, "tma must exit 0 on SIGTERM")
        # The watch does not hold the drain (10 s): it is ended at once, with a reason.
        self.assertLess(time.monotonic() - started, 8)
        out, err = watch.communicate(timeout=30)
        self.assertNotEqual(watch.returncode, 0)
        self.assertIn("stopping", err)
        # Left for the next start (tma is down: read where it keeps it).
        self.assertEqual(self.redis.cli("HGET", f"rwg:tma:dep:{dep}", "state"),
                         ["DEPLOYMENT_STATE_RUNNING"])
        self.no_temp_files(self.ftp_root)  # files in flight finished
        self.start_tma()
        rwgtest.wait_until("deployment carried on", lambda: self.ctl.json(
            "tma", "deployment", "show", dep).get("state") == "DEPLOYMENT_STATE_COMPLETED",
            timeout=180)
        self.assertEqual(set(os.listdir(self.ftp_root)), self.expected(phones))
        events = self.ctl.json("tma", "events", "--deployment", dep)["events"]
        actions = [e["action"] for e in events]
        self.assertEqual(actions.count("file.written"), 1500)
        self.assertIn("deployment.paused", actions)
        self.assertIn("deployment.resumed", actions)

    def scratch_ftps(self, root):
        """An FTPS server (explicit TLS required on both channels): pyftpdlib as
        tests/testing/scratch_ftp.py runs it, with its fix for TLS data channels (pyftpdlib
        closes one whose transfer command comes after another command, as curl sends TYPE)."""
        os.makedirs(root)
        pem = self.write("ftps.pem", rwgtest.read_bytes(self.certs["cert"]) +
                         rwgtest.read_bytes(self.certs["key"]))
        p = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "../testing/scratch_ftp.py"),
             "--dir", root, "--user", "mngt_ftp_67xxi", "--password", "ftps-pass-1",
             "--tls-cert", pem], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        def stop():
            p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()
        self.addCleanup(stop)
        return int(p.stdout.readline().split()[1])

    def test_ftps_with_the_right_ca_only(self):
        root = os.path.join(self.tmp, "ftps")
        port = self.scratch_ftps(root)
        pw = self.write("ftps.pass", "ftps-pass-1")
        self.ctl.ok("tma", "server", "add", "secure", "--kind", "ftps", "--address", "127.0.0.1",
                    "--port", str(port), "--password-file", pw, "--ca-file", self.certs["ca"])
        os.makedirs(os.path.join(self.tmp, "other"))
        other = rwgtest.make_certs(os.path.join(self.tmp, "other"))
        self.ctl.ok("tma", "server", "add", "secure-wrong-ca", "--kind", "ftps", "--address",
                    "127.0.0.1", "--port", str(port), "--password-file", pw, "--ca-file",
                    other["ca"])
        phones = self.declare(2)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        r = self.deploy("--server", "secure", "--csv", csv_path)
        self.assertIn("Deployment completed", r.stdout)
        self.assertEqual(set(os.listdir(root)), self.expected(phones))
        inv = {e["mac"]: e for e in self.ctl.json("tma", "inventory").get("entries", [])}
        for _, _, mac in phones:
            body = rwgtest.read_bytes(os.path.join(root, f"{mac}.cfg"))
            self.assertEqual(hashlib.sha256(body).hexdigest(), inv[mac]["sha256"])
        # A server whose certificate does not chain to the CA given: nothing is sent.
        r = self.deploy("--server", "secure-wrong-ca", "--csv", csv_path, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Deployment failed", r.stdout)
        self.assertIn("certificate", r.stdout.lower())

    def test_five_thousand_phones_with_progress_in_order(self):
        self.declare(5000)
        csv_path = self.write("rw.csv", self.ctl.ok("tma", "csv", "--site", "paris"))
        r = self.deploy("--server", "remote", "--csv", csv_path, timeout=900)
        self.assertIn("Deployment completed", r.stdout)
        self.assertEqual(len(os.listdir(self.ftp_root)), 5000)
        # Not a terminal: plain progress lines, files done never going back.
        done = [int(m.group(1)) for m in re.finditer(r"(\d+)/5000", r.stderr)]
        self.assertTrue(done, r.stderr[-2000:])
        self.assertEqual(done, sorted(done))
        self.assertEqual(done[-1], 5000)
        dep = self.deployments()[0]["id"]
        events = self.ctl.json("tma", "events", "--deployment", dep, "--limit", "10000")["events"]
        seqs = [int(e["seq"]) for e in events]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(sum(1 for e in events if e["action"] == "file.written"), 5000)


if __name__ == "__main__":
    unittest.main()
