"""Integration: the Grafana dashboards and the alert rules against a real Prometheus.

Every rwg service runs (control, sip-edge, media-relay, provisioning, sync, tma; Kamailio as the
iPBX, with a stand-in of its XML port), scraped every second by Prometheus (Debian's
`prometheus`) with the rules of helm/rwg/rules loaded. Under some load (phones registering, a
call with audio through the relay, provisioning downloads, a 404, the iPBX linking to the sync
API with requests-oauthlib and pulling its devices), every query of every panel of every
dashboard in helm/rwg/dashboards is evaluated through Prometheus' HTTP API over the test's
time span and must return data. Every metric a dashboard or a rule names must be exported by a
service; those the rules read must be exported from the start, before anything happens. The
rules must load and be evaluated without error: with the test's two-day certificates the
certificate alerts fire, nothing else does until the media relay is stopped, Redis killed and
sync stopped.

Run with Debian's python3 (/usr/bin/python3, as CTest does): the sync API's client is
python3-requests-oauthlib.
"""
import glob
import http.server
import json
import math
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import unittest
import urllib.parse
import urllib.request

import rwgtest
import sipclient
import test_calls
from test_calls import OFFICE_USER, RelayFixture

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "helm", "rwg", "dashboards", "*.json")))
RULES = os.path.join(ROOT, "helm", "rwg", "rules", "rwg.rules.yaml")
SCRAPE_SECONDS = 1
# What Grafana puts in $__rate_interval for a 1 s step: max(step + scrape, 4 * scrape).
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
METRIC = re.compile(r"\brwg_[a-z0-9_]+")
# Services with a dashboard and rules that this live run does not start yet: ott (the OTT
# access service, docs/ott.md). Its dashboard and rules are checked without it here
# (DashboardFilesTest: the queries parse, the metrics are those the docs list;
# tests/observability: the rules' promtool cases); the live checks skip its metrics and its
# board until the run starts it under load.
NOT_LIVE = {"ott.json": "rwg_ott_"}
# Boards whose metrics must each be documented, and where: the metric's prefix and the docs.
DOCUMENTED = {"tma.json": ("rwg_tma_", ["docs/tma.md"]),
              "ott.json": ("rwg_ott_", ["docs/ott.md", "docs/observability.md"])}


def panels(board):
    """Every panel of a dashboard, those inside rows included."""
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_queries(board):
    """(panel title, expr) of every query of every panel, and of the query variables."""
    for p in panels(board):
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", v["query"]["query"])
            assert m, f"variable {v['name']}: unexpected query {v['query']}"
            yield f"variable {v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"


def substitute(expr):
    """The expression as Grafana sends it with every template variable at All."""
    expr = (expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "1s")
            .replace("$instance", ".*"))
    assert "$" not in expr, f"variable left in {expr}"
    return expr


def sys_promtool():
    return shutil.which("promtool") or "promtool"


def scrape_names(urls):
    """Metric names (histograms' _bucket, _sum and _count lines included) on /metrics."""
    names = set()
    for url in urls:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


class DashboardFilesTest(unittest.TestCase):
    """What Grafana and the chart need of the dashboard files themselves."""

    def test_dashboards_have_fixed_uids_and_a_datasource_variable(self):
        self.assertEqual([os.path.basename(d) for d in DASHBOARDS],
                         ["media-relay.json", "ott.json", "overview.json", "provisioning.json",
                          "sip-edge.json", "sync.json", "tma.json"])
        uids = set()
        for path in DASHBOARDS:
            with open(path) as f:
                board = json.load(f)
            name = os.path.basename(path)
            self.assertEqual(board["uid"], "rwg-" + name[:-5], name)
            uids.add(board["uid"])
            self.assertIsNone(board.get("id"), f"{name}: no database id in a provisioned board")
            ds = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
            self.assertEqual(len(ds), 1, name)
            self.assertEqual((ds[0]["type"], ds[0]["query"]), ("datasource", "prometheus"), name)
            queries = 0
            for p in panels(board):
                if p["type"] == "row":
                    continue
                self.assertIn(p["type"], ("timeseries", "stat"), f"{name}: {p['title']}")
                self.assertEqual(p["datasource"]["uid"], "${datasource}", f"{name}: {p['title']}")
                self.assertTrue(p["targets"], f"{name}: {p['title']} has no query")
                for t in p["targets"]:
                    self.assertEqual(t["datasource"]["uid"], "${datasource}")
                    queries += 1
            self.assertGreater(queries, 10, name)
        self.assertEqual(len(uids), len(DASHBOARDS))

    def test_boards_parse_and_name_documented_metrics(self):
        """The boards of DOCUMENTED: every query (as Grafana sends it) parses as PromQL
        (promtool, as recording rules) and names only metrics the service's documentation
        lists (a histogram by its _bucket, _sum and _count series)."""
        for board_name, (prefix, doc_files) in DOCUMENTED.items():
            documented = set()
            for doc in doc_files:
                with open(os.path.join(ROOT, doc)) as f:
                    documented |= set(re.findall(rf"`({prefix}[a-z0-9_]+)", f.read()))
            self.assertTrue(documented, f"{board_name}: no {prefix} metric in {doc_files}")
            with open(os.path.join(ROOT, "helm", "rwg", "dashboards", board_name)) as f:
                board = json.load(f)
            rules = []
            for title, expr in dashboard_queries(board):
                for m in METRIC.findall(expr):
                    self.assertTrue(m.startswith(prefix), f"{board_name}: {title}: {m}")
                    base = re.sub(r"_(bucket|sum|count)$", "", m)
                    self.assertTrue(m in documented or base in documented,
                                    f"{board_name}: {title}: {m} is not in {doc_files}")
                rules.append({"record": f"check:{len(rules)}", "expr": substitute(expr)})
            self.assertGreater(len(rules), 10, board_name)
            path = os.path.join(self.tmpdir(), "board.rules.yaml")
            with open(path, "w") as f:
                json.dump({"groups": [{"name": board_name, "rules": rules}]}, f)
            r = subprocess.run([sys_promtool(), "check", "rules", path], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, f"{board_name}: {r.stdout}{r.stderr}")

    def tmpdir(self):
        import tempfile
        d = tempfile.TemporaryDirectory(prefix="rwg-boards-")
        self.addCleanup(d.cleanup)
        return d.name

    def test_rules_check(self):
        r = subprocess.run([sys_promtool(), "check", "rules", RULES], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)


@unittest.skipUnless(shutil.which("prometheus") and shutil.which("baresip"),
                     "prometheus and baresip are installed by tools/rwg deps")
class ObservabilityTest(RelayFixture):
    """All of rwg, its metrics scraped by a real Prometheus that evaluates the rules."""

    # The phones and the call, as test_calls makes them.
    phones = test_calls.CallsTest.phones
    talk = test_calls.CallsTest.talk
    calls = test_calls.CallsTest.calls
    answered = test_calls.CallsTest.answered
    dump = test_calls.CallsTest.dump
    trim = test_calls.CallsTest.__dict__["trim"]
    assert_heard = test_calls.CallsTest.assert_heard

    def setUp(self):
        super().setUp()
        self.start_provisioning()
        self.start_sync()
        self.start_tma()
        self.services = {"control": self.control, "sip-edge": self.edge,
                         "media-relay": self.relay, "provisioning": self.prov, "sync": self.sync,
                         "tma": self.tma}
        self.start_prometheus()

    # -- the deployment ------------------------------------------------------------------

    def start_provisioning(self):
        self.hash = self.ctl.json("hash", "generate")["key"]
        store = os.path.join(self.tmp, "store")
        os.mkdir(store)
        with open(os.path.join(store, "aastra.cfg"), "w") as f:
            f.write("sip proxy ip: 127.0.0.1\nsip proxy port: 5061\n")
        token = self.store_token = os.path.join(self.tmp, "store-token")
        with open(token, "w") as f:
            f.write("observability-store-token-0123456789\n")
        # The iPBX's XML port, on the iPBX's address (icp.host is 127.0.0.2).
        self.xml_port = self.fake_xml_port()
        self.ctl.ok("config", "set", f"icp.xml_destination_port={self.xml_port}")
        self.https_port = rwgtest.free_port()
        self.prov = rwgtest.Service("provisioning", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{self.https_port}", "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"], "--store-dir", store,
            "--api-token-file", token, "--xml-ca-file", self.certs["ca"],
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]]).start()
        self.addCleanup(self.prov.stop)

    def start_sync(self):
        self.sync_port = rwgtest.free_port()
        self.sync = rwgtest.Service("sync", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--listen", f"127.0.0.1:{self.sync_port}", "--https-cert-file", self.certs["cert"],
            "--https-key-file", self.certs["key"],
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]]).start()
        self.addCleanup(self.sync.stop)

    def start_tma(self):
        self.tma = rwgtest.Service("tma", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--store-address", self.prov.grpc_address, "--store-token-file", self.store_token,
            "--store-ca-file", self.certs["ca"],
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]]).start()
        self.addCleanup(self.tma.stop)
        self.ctl.env["RWG_TMA_SERVER"] = self.tma.grpc_address

    def fake_xml_port(self):
        """An HTTPS server on 127.0.0.2 standing for the iPBX's XML port; returns its port."""
        port = rwgtest.free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<AastraIPPhoneTextScreen><Text>rwg</Text></AastraIPPhoneTextScreen>"
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.2", port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs["cert"], self.certs["key"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return port

    def start_prometheus(self):
        pdir = os.path.join(self.tmp, "prometheus")
        os.mkdir(pdir)
        jobs = "".join(
            f"  - job_name: {name}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{s.ports['metrics']}']\n"
            for name, s in self.services.items())
        config = os.path.join(pdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {SCRAPE_SECONDS}s\n"
                    f"  scrape_timeout: {SCRAPE_SECONDS}s\n"
                    f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
                    f"rule_files:\n  - {RULES}\n"
                    f"scrape_configs:\n{jobs}")
        self.prom_port = rwgtest.free_port()
        self.prom_log = open(os.path.join(pdir, "prometheus.log"), "wb")
        self.addCleanup(self.prom_log.close)
        self.prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={pdir}/data",
             f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
            stdout=self.prom_log, stderr=self.prom_log)
        self.addCleanup(self.stop_prometheus)
        self.started = time.time()
        rwgtest.wait_until("prometheus ready", self.prometheus_ready, timeout=30)
        rwgtest.wait_until("every service scraped", lambda: self.targets_up() == set(
            self.services), timeout=15)

    def stop_prometheus(self):
        if self.prom.poll() is None:
            self.prom.terminate()
            try:
                self.prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.prom.kill()
                self.prom.wait()

    def prometheus_ready(self):
        assert self.prom.poll() is None, "prometheus exited: " + self.prometheus_log()
        try:
            return urllib.request.urlopen(
                f"http://127.0.0.1:{self.prom_port}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def prometheus_log(self):
        with open(self.prom_log.name, errors="replace") as f:
            return f.read()[-3000:]

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=30) as r:
            answer = json.load(r)
        self.assertEqual(answer["status"], "success", answer)
        return answer["data"]

    def targets_up(self):
        return {t["labels"]["job"] for t in self.api("targets")["activeTargets"]
                if t["health"] == "up"}

    def alerts(self):
        """{(alert name, state, certificate label)} now."""
        return {(a["labels"]["alertname"], a["state"], a["labels"].get("certificate", ""))
                for a in self.api("alerts")["alerts"]}

    # -- load ----------------------------------------------------------------------------

    def https_get(self, path):
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        try:
            with urllib.request.urlopen(f"https://localhost:{self.https_port}{path}",
                                        context=ctx, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def load(self):
        """Phones registering, a call with audio both ways through the relay, provisioning
        downloads (a file, an XML feature through the iPBX, a MAC file the store lacks)."""
        for _ in range(3):
            self.assertEqual(self.https_get(f"/{self.hash}/ftp_67xxi/aastra.cfg")[0], 200)
        self.assertEqual(self.https_get(f"/{self.hash}/omm.mghc/?key=20")[0], 200)
        self.assertEqual(self.https_get(f"/{self.hash}/ftp_67xxi/08000f000001.cfg")[0], 404)
        a, b = self.phones()
        self.talk(a, b, OFFICE_USER)
        self.assert_heard(b, test_calls.TONE_A, test_calls.TONE_B)
        self.assert_heard(a, test_calls.TONE_B, test_calls.TONE_A)
        self.assertEqual(self.https_get(f"/{self.hash}/ftp_67xxi/aastra.cfg")[0], 200)
        self.sync_load()
        self.tma_load()

    def tma_load(self):
        """A deployment that completes (to the store), one that fails (an FTP server that is
        not there), and a refused call."""
        csv_path = os.path.join(self.tmp, "rw.csv")
        with open(csv_path, "w") as f:
            f.write("MAC ADDRESS,!sip line1 user name,!sip line1 auth name,sip line1 password\n"
                    "08000F000042,1001,1001,a-password\n")
        self.ctl.ok("tma", "server", "add", "local", "--kind", "local")
        self.assertIn("Deployment completed",
                      self.ctl.ok("tma", "deploy", "--server", "local", "--csv", csv_path))
        # The phone fetches its file: the inventory has it fetched.
        self.assertEqual(self.https_get(f"/{self.hash}/ftp_67xxi/08000F000042.cfg")[0], 200)
        pw = os.path.join(self.tmp, "ftp.pass")
        with open(pw, "w") as f:
            f.write("ftp-password\n")
        self.ctl.ok("tma", "server", "add", "gone", "--kind", "ftp", "--address", "127.0.0.1",
                    "--port", str(rwgtest.free_port()), "--password-file", pw)
        failed = self.ctl.run("tma", "deploy", "--server", "gone", "--csv", csv_path)
        self.assertIn("Deployment failed", failed.stdout)
        self.assertNotEqual(self.ctl.run("tma", "server", "delete", "nosuch").returncode, 0)

    def sync_load(self):
        """The iPBX on the sync API, as docs/sync-api.md shows it with requests-oauthlib: a
        consumer added with rwgctl (calling from 127.0.0.1, not icp.host), the three legs, the
        device list, the CSV, a short long poll; an unsigned request and a bad signature
        refused. (verify= on every call: REQUESTS_CA_BUNDLE, when set, overrides a session's.)"""
        try:
            import requests
            from requests_oauthlib import OAuth1Session
        except ImportError as e:
            self.fail(f"{e}: run with /usr/bin/python3 (python3-requests-oauthlib)")
        base, ca = f"https://127.0.0.1:{self.sync_port}", self.certs["ca"]
        added = self.ctl.json("sync", "consumer", "add", "ipbx", "--source", "127.0.0.1")
        cid, secret = added["consumer"]["id"], added["secret"]
        r = requests.get(base + "/api/v1/devices", verify=ca, timeout=10)
        self.assertEqual(r.status_code, 401, r.text)
        self.assertTrue(r.headers["WWW-Authenticate"].startswith("OAuth"), r.headers)
        with OAuth1Session(cid, client_secret=secret, callback_uri="oob") as s:
            temporary = s.fetch_request_token(base + "/oauth/request_token", verify=ca)
        verifier = self.ctl.json("sync", "token", "approve", temporary["oauth_token"])["verifier"]
        with OAuth1Session(cid, client_secret=secret, resource_owner_key=temporary["oauth_token"],
                           resource_owner_secret=temporary["oauth_token_secret"],
                           verifier=verifier) as s:
            access = s.fetch_access_token(base + "/oauth/access_token", verify=ca)
        with OAuth1Session(cid, client_secret=secret, resource_owner_key=access["oauth_token"],
                           resource_owner_secret=access["oauth_token_secret"]) as api:
            devices = api.get(base + "/api/v1/devices", verify=ca, timeout=10)
            self.assertEqual(devices.status_code, 200, devices.text)
            self.assertIn("1001", {d["set_username"] for d in devices.json()["devices"]})
            csv = api.get(base + "/api/v1/devices_mbg.csv", verify=ca, timeout=10)
            self.assertEqual(csv.status_code, 200, csv.text)
            self.assertTrue(csv.text.startswith("Login,NA,Password"), csv.text[:80])
            rev = devices.json()["revision"]
            changes = api.get(base + f"/api/v1/changes?since={rev}&wait=1", verify=ca,
                              timeout=10)
            self.assertEqual(changes.status_code, 200, changes.text)
        with OAuth1Session(cid, client_secret="not-the-secret",
                           resource_owner_key=access["oauth_token"],
                           resource_owner_secret=access["oauth_token_secret"]) as wrong:
            r = wrong.get(base + "/api/v1/devices", verify=ca, timeout=10)
        self.assertEqual(r.status_code, 401, r.text)
        self.assertIn("oauth_problem=signature_invalid", r.text)

    # -- tests ---------------------------------------------------------------------------

    def test_every_panel_of_every_dashboard_returns_data(self):
        self.load()
        time.sleep(3 * SCRAPE_SECONDS)  # the last of it scraped
        exported = scrape_names(s.metrics_url for s in self.services.values())
        end = time.time()
        empty, unknown = [], []
        for path in DASHBOARDS:
            if os.path.basename(path) in NOT_LIVE:
                continue  # not started by this run: checked by DashboardFilesTest
            with open(path) as f:
                board = json.load(f)
            for title, expr in dashboard_queries(board):
                where = f"{os.path.basename(path)}: {title}: {expr}"
                unknown += [f"{where} ({m})" for m in METRIC.findall(expr) if m not in exported]
                data = self.api("query_range", query=substitute(expr), start=self.started,
                                end=end, step=f"{SCRAPE_SECONDS}s")
                values = [float(v) for s in data["result"] for _, v in s["values"]]
                if not any(not math.isnan(v) for v in values):
                    empty.append(where)
        self.assertEqual({"metrics no service exports": unknown, "queries without data": empty},
                         {"metrics no service exports": [], "queries without data": []})

    def test_rules_read_exported_metrics_and_fire_as_they_should(self):
        # Before anything happened: every metric a rule reads is there already (at 0), so
        # that an alert is never blind for want of a series.
        exported = scrape_names(s.metrics_url for s in self.services.values())

        # The rules as Prometheus loaded them, each evaluated without error.
        def evaluated():
            rules = [r for g in self.api("rules")["groups"] for r in g["rules"]]
            return rules and all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith(
                "2") for r in rules) and rules
        rules = rwgtest.wait_until("rules evaluated", evaluated, timeout=15)
        check = subprocess.run([sys_promtool(), "check", "rules", RULES], capture_output=True,
                               text=True, timeout=60)
        self.assertIn(f"SUCCESS: {len(rules)} rules found", check.stdout)
        # (rwg_sync_token_expiry_days has a series per consumer holding an access token: none
        # yet, and nothing to expire.)
        # (The metrics of services this run does not start, NOT_LIVE, neither.)
        missing = [f"{r['name']}: {m}" for r in rules for m in METRIC.findall(r["query"])
                   if m not in exported and m != "rwg_sync_token_expiry_days"
                   and not m.startswith(tuple(NOT_LIVE.values()))]
        self.assertEqual(missing, [], "rules read metrics not exported from the start")

        # The test certificates (tests/integration/rwgtest.py) last two days: each service's
        # certificate alerts fire at once, and nothing else.
        expected = {(name, "firing", cert) for name in
                    ("RwgCertificateExpiring", "RwgCertificateExpiringCritical")
                    for cert in ("grpc", "sip_tls", "https")}
        rwgtest.wait_until("certificate alerts", lambda: self.alerts() >= expected, timeout=15)
        self.assertEqual(self.alerts(), expected)

        # A phone registers: licences (1 of 5) and the iPBX are fine.
        conn, r = self.register("1001")
        self.assertEqual(sipclient.status(r), 200, r)
        time.sleep(3 * SCRAPE_SECONDS)
        self.assertEqual(self.alerts(), expected)

        # The only media relay stops: sip-edge sees none, the alert is pending (for: 1m).
        self.relay.stop()
        rwgtest.wait_until("RwgNoMediaRelay pending", lambda: (
            "RwgNoMediaRelay", "pending", "") in self.alerts(), timeout=30)
        # Redis dies: control and sip-edge say so.
        self.redis.kill()
        rwgtest.wait_until("RwgRedisUnreachable pending", lambda: len([
            a for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "RwgRedisUnreachable"]) == 2, timeout=30)
        jobs = {a["labels"]["job"] for a in self.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "RwgRedisUnreachable"}
        self.assertEqual(jobs, {"control", "sip-edge"})
        # The sync API stops: its scrapes fail, RwgSyncDown is pending (for: 5m) for job sync.
        self.sync.stop()
        rwgtest.wait_until("RwgSyncDown pending", lambda: (
            "RwgSyncDown", "pending", "") in self.alerts(), timeout=30)
        self.assertEqual({a["labels"]["job"] for a in self.api("alerts")["alerts"]
                          if a["labels"]["alertname"] == "RwgSyncDown"}, {"sync"})


if __name__ == "__main__":
    unittest.main()
