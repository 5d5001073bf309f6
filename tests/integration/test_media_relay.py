"""Integration: the media-relay service on loopback, with a real Redis.

The relay's API is driven with `rwgctl relay ...`; plain RTP ends are Python sockets, SRTP
ends are rwg-media-peer (libsrtp2 contexts of its own).
"""
import json
import os
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.request

import rwgtest

TOKEN = "relay-api-token-0123456789"


def rtp(seq, ssrc, payload):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def udp(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(1)
    return s


def udp_pair():
    """Sockets on ports p (RTP) and p + 1 (RTCP)."""
    for _ in range(100):
        a = udp()
        try:
            return a, udp(a.getsockname()[1] + 1)
        except OSError:
            a.close()
    raise AssertionError("no free port pair")


class RelayFixture(rwgtest.TempDirTest):
    # The relays' ranges are below the kernel's ephemeral ports (32768 and up here): a UDP
    # socket of another test running beside, bound to port 0, could take a port of the range
    # while a relay restarts, and the restored session would lose it.
    port_min = 24000
    port_max = 24099
    relay_args = []

    def setUp(self):
        super().setUp()
        os.mkdir(os.path.join(self.tmp, "redis"))
        self.redis = rwgtest.Redis(os.path.join(self.tmp, "redis")).start()
        self.addCleanup(self.redis.kill)
        self.key = os.path.join(self.tmp, "secret.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex())
        self.token = os.path.join(self.tmp, "api-token")
        with open(self.token, "w") as f:
            f.write(TOKEN + "\n")
        self.relay = self.start_relay()
        cli = os.path.join(self.tmp, "cli")
        os.makedirs(cli, exist_ok=True)
        with open(os.path.join(cli, "token"), "w") as f:
            f.write(TOKEN)
        self.ctl = rwgtest.Rwgctl(self.relay.grpc_address, "", cli)
        self.ctl.env["RWG_INSECURE"] = "1"

    def relay_service(self):
        return rwgtest.Service("media-relay", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--api-token-file", self.token, "--bind-address", "127.0.0.1",
            "--port-min", str(self.port_min), "--port-max", str(self.port_max),
            "--workers", "2"] + self.relay_args)

    def start_relay(self, name="media-relay"):
        r = self.relay_service()
        r.start()
        self.addCleanup(r.stop)
        return r

    def restart_relay(self):
        ports = self.relay.ports
        self.relay.stop()
        self.relay = self.start_relay()
        self.ctl.env["RWG_SERVER"] = self.relay.grpc_address
        return ports

    def allocate(self, *args):
        return self.ctl.json("relay", "allocate", *args)

    def metrics(self):
        return urllib.request.urlopen(
            f"http://127.0.0.1:{self.relay.ports['metrics']}/metrics", timeout=5).read().decode()


class PlainRelayTest(RelayFixture):
    def test_plain_rtp_both_ways_in_order_and_foreign_source_dropped(self):
        (phone, phone_rtcp), (pbx, pbx_rtcp) = udp_pair(), udp_pair()
        s = self.allocate("--call-id", "call-1", "--set-suite", "RTP",
                          "--set-remote", f"127.0.0.1:{phone.getsockname()[1]}",
                          "--icp-suite", "RTP", "--icp-remote",
                          f"127.0.0.1:{pbx.getsockname()[1]}")
        set_port, icp_port = s["set"]["local_port"], s["icp"]["local_port"]
        self.assertEqual(set_port % 2, 0)
        self.assertTrue(self.port_min <= set_port <= self.port_max)
        for i in range(2000):
            p = rtp(i, 0x1111, bytes([i % 256]) * 160)
            phone.sendto(p, ("127.0.0.1", set_port))
            got, src = pbx.recvfrom(2048)
            self.assertEqual((got, src), (p, ("127.0.0.1", icp_port)))
            q = rtp(i, 0x2222, bytes([(i * 7) % 256]) * 160)
            pbx.sendto(q, ("127.0.0.1", icp_port))
            got, src = phone.recvfrom(2048)
            self.assertEqual((got, src), (q, ("127.0.0.1", set_port)))
        # RTCP goes through the next ports, both ways.
        sr = struct.pack("!BBHI", 0x80, 200, 6, 0x1111) + b"\0" * 20
        phone_rtcp.sendto(sr, ("127.0.0.1", set_port + 1))
        self.assertEqual(pbx_rtcp.recvfrom(2048), (sr, ("127.0.0.1", icp_port + 1)))
        rr = struct.pack("!BBHI", 0x81, 201, 7, 0x2222) + struct.pack(
            "!IBBHIIII", 0x1111, 12, 0, 5, 100, 33, 0, 0)
        pbx_rtcp.sendto(rr, ("127.0.0.1", icp_port + 1))
        self.assertEqual(phone_rtcp.recvfrom(2048), (rr, ("127.0.0.1", set_port + 1)))
        # A source other than the phone's gets nothing through (RTP bleed).
        intruder = udp()
        for i in range(50):
            intruder.sendto(rtp(5000 + i, 0x1111, b"evil" * 40), ("127.0.0.1", set_port))
        with self.assertRaises(socket.timeout):
            pbx.recvfrom(2048)
        shown = self.ctl.json("relay", "show", s["id"])
        self.assertEqual(int(shown["set"]["stats"]["rtp_in"]["packets"]), 2000)
        self.assertEqual(int(shown["icp"]["stats"]["rtp_out"]["packets"]), 2000)
        self.assertEqual(int(shown["set"]["stats"]["dropped_foreign_source"]), 50)
        self.assertEqual(int(shown["set"]["stats"]["rtcp_in"]["packets"]), 1)
        # The iPBX's receiver report: 12/256 lost, 5 in all, jitter 33.
        self.assertEqual(shown["icp"]["stats"]["fraction_lost"], 12)
        self.assertEqual(shown["icp"]["stats"]["cumulative_lost"], 5)
        self.assertEqual(shown["icp"]["stats"]["jitter"], 33)
        rwgtest.wait_until("metrics", lambda: 'rwg_media_relay_dropped_total{leg="set",reason='
                           '"foreign_source"} 50' in self.metrics(), timeout=5)
        self.assertIn('rwg_media_relay_packets_total{direction="in",leg="set"} 2000',
                      self.metrics())
        final = self.ctl.json("relay", "delete", s["id"])
        self.assertEqual(final["id"], s["id"])
        self.assertIn("NOT_FOUND", self.ctl.run("relay", "show", s["id"]).stderr)
        log = self.relay.read_log()
        self.assertIn(f'msg="session ended" session={s["id"]} call_id=call-1', log)

    def test_update_moves_the_remote_end(self):
        phone, pbx, pbx2 = udp(), udp(), udp()
        s = self.allocate("--set-suite", "RTP", "--set-remote",
                          f"127.0.0.1:{phone.getsockname()[1]}", "--icp-suite", "RTP",
                          "--icp-remote", f"127.0.0.1:{pbx.getsockname()[1]}")
        phone.sendto(rtp(1, 1, b"a" * 20), ("127.0.0.1", s["set"]["local_port"]))
        self.assertEqual(pbx.recvfrom(2048)[0], rtp(1, 1, b"a" * 20))
        self.ctl.json("relay", "update", s["id"], "--icp-remote",
                      f"127.0.0.1:{pbx2.getsockname()[1]}")
        phone.sendto(rtp(2, 1, b"b" * 20), ("127.0.0.1", s["set"]["local_port"]))
        self.assertEqual(pbx2.recvfrom(2048)[0], rtp(2, 1, b"b" * 20))
        # The old remote no longer gets through the ICP leg.
        pbx.sendto(rtp(3, 2, b"c" * 20), ("127.0.0.1", s["icp"]["local_port"]))
        with self.assertRaises(socket.timeout):
            phone.recvfrom(2048)

    def test_bad_requests_are_refused_clearly(self):
        cases = [
            (["--set-suite", "AES_CM_128_HMAC_SHA1_99"], "INVALID_ARGUMENT: set: unsupported"),
            (["--set-suite", "AES_CM_128_HMAC_SHA1_80", "--set-key", "QUJD"],
             "must be 30 bytes"),
            (["--set-suite", "RTP", "--set-key", "QUJD"], "remote_key given for a plain"),
            (["--icp-remote", "not-an-ip:4000"], "INVALID_ARGUMENT: icp: remote address"),
        ]
        for args, expected in cases:
            r = self.ctl.run("relay", "allocate", *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn(expected, r.stderr, args)
        self.assertIn("NOT_FOUND", self.ctl.run("relay", "update", "nope", "--set-suite",
                                                "RTP").stderr)
        self.assertIn("NOT_FOUND", self.ctl.run("relay", "delete", "nope").stderr)
        with open(os.path.join(self.tmp, "wrong"), "w") as f:
            f.write("not-the-token-at-all")
        r = self.ctl.run("--token-file", os.path.join(self.tmp, "wrong"), "relay", "list")
        self.assertIn("UNAUTHENTICATED", r.stderr)
        self.assertEqual(self.ctl.json("relay", "list").get("sessions", []), [])
        self.assertTrue(self.relay.alive())
        # Health follows Redis.
        self.assertEqual(self.ctl.run("health").stdout.strip(), "SERVING")
        self.redis.kill()
        rwgtest.wait_until("NOT_SERVING", lambda: self.ctl.run("health").stdout.strip()
                           == "NOT_SERVING", timeout=10)
        r = self.ctl.run("relay", "allocate")
        self.assertIn("UNAVAILABLE", r.stderr)
        self.assertTrue(self.relay.alive())


class PoolTest(RelayFixture):
    port_min = 24200
    port_max = 24211  # six pairs: three sessions

    def test_exhaustion_and_only_allocated_ports_are_open(self):
        ids = []
        for _ in range(3):
            ids.append(self.allocate("--set-suite", "AES_CM_128_HMAC_SHA1_80")["id"])
        r = self.ctl.run("relay", "allocate")
        self.assertEqual(r.returncode, 1)
        self.assertIn("RESOURCE_EXHAUSTED", r.stderr)
        listed = self.ctl.json("relay", "list")
        self.assertEqual(listed["ports_used"], 12)
        self.assertEqual(listed["ports_free"], 0)
        self.ctl.ok("relay", "delete", ids[0])
        # A UDP sweep of the range: a closed port answers ICMP unreachable.
        open_ports = self.sweep()
        used = set()
        for s in self.ctl.json("relay", "list")["sessions"]:
            for leg in ("set", "icp"):
                p = s[leg]["local_port"]
                used |= {p, p + 1}
        self.assertEqual(open_ports, used)
        self.assertEqual(len(used), 8)
        self.assertIn("rwg_media_relay_ports_used 8", self.metrics_eventually("ports_used 8"))

    def test_pool_part_gives_disjoint_ranges(self):
        # Instance 2 of 2 on the same range takes the upper half: 24206-24211.
        other = rwgtest.Service("media-relay", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--api-token-file", self.token, "--bind-address", "127.0.0.1",
            "--port-min", str(self.port_min), "--port-max", str(self.port_max),
            "--pool-part", "2/2", "--instance", "media-relay-1"])
        other.log_path = os.path.join(self.tmp, "media-relay-1.log")
        other.start()
        self.addCleanup(other.stop)
        ctl = rwgtest.Rwgctl(other.grpc_address, "", os.path.join(self.tmp, "cli"))
        ctl.env["RWG_INSECURE"] = "1"
        s = ctl.json("relay", "allocate")
        self.assertEqual((s["set"]["local_port"], s["icp"]["local_port"]), (24206, 24208))
        self.assertEqual(s["instance"], "media-relay-1")
        self.assertIn("RESOURCE_EXHAUSTED", ctl.run("relay", "allocate").stderr)
        bad = subprocess.run([os.path.join(rwgtest.BIN, "media-relay"), "--secret-key-file",
                              self.key, "--api-token-file", self.token, "--pool-part", "3/2"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("pool-part: '3/2' is not i/n", bad.stderr)

    def test_instance_is_advertised_only_with_its_api_address(self):
        # Every write of the instance record, seen from the start: a record without a usable
        # API address would send the SIP edge's first calls nowhere (503 to the phone).
        mon = socket.create_connection(("127.0.0.1", self.redis.port), timeout=5)
        self.addCleanup(mon.close)
        mon.sendall(b"MONITOR\r\n")
        self.assertEqual(mon.recv(5), b"+OK\r\n")
        other = rwgtest.Service("media-relay", self.tmp, [
            "--redis-address", f"127.0.0.1:{self.redis.port}", "--secret-key-file", self.key,
            "--api-token-file", self.token, "--bind-address", "127.0.0.1",
            "--port-min", "24300", "--port-max", "24399", "--instance", "media-relay-9"])
        other.log_path = os.path.join(self.tmp, "media-relay-9.log")
        other.start()
        self.addCleanup(other.stop)
        rwgtest.wait_until("the instance record", lambda: "media-relay-9" in str(
            self.redis.cmd("HKEYS", "rwg:relay:instances")), timeout=5)
        mon.settimeout(0.5)
        seen = b""
        try:
            while True:
                chunk = mon.recv(65536)
                if not chunk:
                    break
                seen += chunk
        except socket.timeout:
            pass
        writes = [line for line in seen.decode(errors="replace").splitlines()
                  if '"HSET" "rwg:relay:instances" "media-relay-9"' in line]
        self.assertTrue(writes, seen[-500:])
        for w in writes:
            self.assertIn(f'\\"grpc\\":\\"{other.grpc_address}\\"', w)

    def metrics_eventually(self, needle):
        rwgtest.wait_until(needle, lambda: needle in self.metrics(), timeout=5)
        return self.metrics()

    def sweep(self):
        found = set()
        for port in range(self.port_min, self.port_max + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.2)
            s.connect(("127.0.0.1", port))
            s.send(b"probe")
            try:
                s.recv(100)
            except ConnectionRefusedError:
                s.close()
                continue
            except socket.timeout:
                pass
            found.add(port)
            s.close()
        return found


class RestartTest(RelayFixture):
    relay_args = ["--idle-timeout-seconds", "2"]

    def test_sessions_survive_a_restart_and_go_idle(self):
        phone, pbx = udp(), udp()
        s = self.allocate("--call-id", "kept", "--set-suite", "RTP", "--set-remote",
                          f"127.0.0.1:{phone.getsockname()[1]}", "--icp-suite", "RTP",
                          "--icp-remote", f"127.0.0.1:{pbx.getsockname()[1]}")
        phone.sendto(rtp(1, 1, b"x" * 20), ("127.0.0.1", s["set"]["local_port"]))
        self.assertEqual(pbx.recvfrom(2048)[0], rtp(1, 1, b"x" * 20))
        self.restart_relay()
        self.assertIn("restored=1", self.relay.read_log())
        phone.sendto(rtp(2, 1, b"y" * 20), ("127.0.0.1", s["set"]["local_port"]))
        self.assertEqual(pbx.recvfrom(2048)[0], rtp(2, 1, b"y" * 20))
        shown = self.ctl.json("relay", "show", s["id"])
        self.assertEqual(shown["call_id"], "kept")
        self.assertFalse(shown.get("idle", False))
        rwgtest.wait_until("idle", lambda: self.ctl.json("relay", "show", s["id"]).get("idle"),
                           timeout=8)
        self.assertIn("rwg_media_relay_idle_sessions_total 1", self.metrics())
        self.assertIn(f'msg="session idle" session={s["id"]}', self.relay.read_log())
        # Keys at rest are sealed: no raw key material in Redis.
        raw = self.redis.cmd("GET", f"rwg:relay:session:{s['id']}")
        self.assertIn(b'"suite":"RTP"', raw)


    def test_started_before_redis_it_waits_then_restores(self):
        """A relay that starts while Redis is down (a node reboot, a pod scheduled first) waits
        for it with no packet worker running, then restores its sessions and relays."""
        phone, pbx = udp(), udp()
        s = self.allocate("--call-id", "early", "--set-suite", "RTP", "--set-remote",
                          f"127.0.0.1:{phone.getsockname()[1]}", "--icp-suite", "RTP",
                          "--icp-remote", f"127.0.0.1:{pbx.getsockname()[1]}")
        self.relay.stop()
        self.redis.stop()
        relay = self.relay = self.relay_service()
        self.addCleanup(relay.stop)
        failed = []
        starter = threading.Thread(target=lambda: self.run_or_note(relay.start, failed))
        starter.start()
        try:
            rwgtest.wait_until("the relay waits for Redis", lambda: relay.proc is not None and
                               "waiting for Redis" in relay.read_log())
            pid = relay.proc.pid
            for _ in range(40):  # 2 s
                names = []
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        names.append(f.read().strip())
                self.assertFalse([n for n in names if n.startswith("rwg-worker")], names)
                time.sleep(0.05)
            self.redis.start()
        finally:
            starter.join()
        self.assertEqual(failed, [])
        self.ctl.env["RWG_SERVER"] = self.relay.grpc_address
        self.assertIn("restored=1", self.relay.read_log())
        phone.sendto(rtp(1, 1, b"z" * 20), ("127.0.0.1", s["set"]["local_port"]))
        self.assertEqual(pbx.recvfrom(2048)[0], rtp(1, 1, b"z" * 20))

    @staticmethod
    def run_or_note(fn, failures):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by the test's thread
            failures.append(e)

    def test_damaged_records_are_forgotten_and_the_rest_restored(self):
        def srtp_session(call_id):
            return self.allocate("--call-id", call_id, "--set-suite", "AES_CM_128_HMAC_SHA1_80",
                                 "--icp-suite", "RTP")["id"]

        good = srtp_session("good")
        # Sessions damaged in place (keys are sealed for their own session id).
        victims = {name: srtp_session(name) for name in ("srtcp", "type", "leg", "key")}
        self.relay.stop()
        indexes = self.redis.cli("KEYS", "rwg:relay:sessions:*")
        self.assertEqual(len(indexes), 1)
        index = indexes[0]

        def damage(name, change):
            key = f"rwg:relay:session:{victims[name]}"
            r = json.loads(self.redis.cli("GET", key)[0])
            change(r)
            self.redis.cli("SET", key, json.dumps(r))

        # An SRTCP count so large that moving the index on packet by packet would never end.
        damage("srtcp", lambda r: r["set"].__setitem__(
            "out", [{"ssrc": 7, "roc": 0, "srtcp": 10**15, "seq": 1}]))
        damage("type", lambda r: r["icp"].__setitem__("in", [{"ssrc": "seven"}]))
        damage("leg", lambda r: r.__setitem__("icp", 5))
        damage("key", lambda r: r["set"].__setitem__("local_key", "not-sealed"))
        victims["json"], victims["missing"] = "json", "missing"
        self.redis.cli("SET", "rwg:relay:session:json", "{not json")
        self.redis.cli("SADD", index, "json", "missing")

        started = time.monotonic()
        self.relay = self.start_relay()
        self.ctl.env["RWG_SERVER"] = self.relay.grpc_address
        self.assertLess(time.monotonic() - started, 15)
        log = self.relay.read_log()
        self.assertIn("restored=1", log)
        for name, why in [("srtcp", "srtcp: 1000000000000000 is more than"),
                          ("type", "ssrc: not a number"), ("leg", "icp leg missing"),
                          ("key", "local_key"), ("json", "not JSON"),
                          ("missing", "record missing")]:
            sid = victims[name]
            line = next((l for l in log.splitlines()
                         if "cannot restore a session" in l and f"session={sid} " in l), "")
            self.assertIn(why, line, name)
            self.assertEqual(self.redis.cli("EXISTS", f"rwg:relay:session:{sid}"), ["0"], name)
        self.assertEqual(self.redis.cli("SMEMBERS", index), [good])
        shown = self.ctl.json("relay", "show", good)
        self.assertEqual(shown["call_id"], "good")
        self.assertEqual(self.ctl.json("relay", "list")["ports_used"], 4)


class SrtpTest(RelayFixture):
    """SRTP on the phone's leg against rwg-media-peer's own libsrtp2 contexts."""

    def peer(self, *args, wait=True):
        argv = [os.path.join(rwgtest.BIN, "rwg-media-peer"), "--relay", self.relay.grpc_address,
                "--token-file", self.token, "-q", *args]
        if not wait:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return json.loads(r.stdout)

    def assert_intact(self, result, direction, packets):
        d = result[direction]
        self.assertEqual((d["sent"], d["received"]), (packets, packets), d)
        for k in ("lost", "duplicated", "out_of_order", "corrupted", "srtp_errors"):
            self.assertEqual(d[k], 0, (direction, k, d))
        self.assertGreater(d["rtcp_received"], 0)
        self.assertEqual(d["rtcp_received"], d["rtcp_sent"])

    def test_10000_packets_each_way_srtp_to_rtp_across_the_wrap(self):
        r = self.peer("--packets", "10000", "--interval-us", "400", "--first-seq", "60000")
        self.assertTrue(r["ok"], r["failures"])
        self.assert_intact(r, "set_to_icp", 10000)
        self.assert_intact(r, "icp_to_set", 10000)
        self.assertEqual(r["relay_stats"]["set"]["rtp_in"], 10000)
        self.assertEqual(r["relay_stats"]["set"]["dropped_auth_failure"], 0)
        self.assertRegex(self.metrics(),
                         r'rwg_media_relay_packets_total\{direction="out",leg="icp"\} 10000')

    def test_srtp_on_both_legs_with_32_bit_tags(self):
        r = self.peer("--streams", "3", "--packets", "600", "--interval-us", "2000",
                      "--set-suite", "AES_CM_128_HMAC_SHA1_32",
                      "--icp-suite", "AES_CM_128_HMAC_SHA1_80")
        self.assertTrue(r["ok"], r["failures"])
        self.assert_intact(r, "set_to_icp", 1800)
        self.assert_intact(r, "icp_to_set", 1800)

    def test_busy_polling_peer_checks_the_same_traffic(self):
        # The benchmark's mode of the peer (one thread that never sleeps) against the relay.
        # Its pace is the benchmark's business: here other tests share the cores.
        r = self.peer("--streams", "3", "--packets", "400", "--interval-us", "2000",
                      "--busy-poll")
        self.assertTrue(r["ok"], r["failures"])
        self.assert_intact(r, "set_to_icp", 1200)
        self.assert_intact(r, "icp_to_set", 1200)

    def test_spoofed_source_gets_nothing_through(self):
        r = self.peer("--streams", "2", "--packets", "600", "--interval-us", "2000", "--spoof")
        self.assertGreater(r["spoofed_sent"], 0)
        self.assertEqual(r["spoofed_received"], 0)
        self.assertEqual(r["relay_stats"]["set"]["dropped_foreign_source"], r["spoofed_sent"])
        self.assertTrue(r["ok"], r["failures"])

    def test_restart_mid_stream_continues_from_redis(self):
        # 200 packets/s per direction, the sequence numbers wrap before the restart.
        proc = self.peer("--streams", "2", "--duration-s", "9", "--interval-us", "5000",
                         "--first-seq", "65300", "--max-loss", "0.6", wait=False)
        time.sleep(3.5)
        self.restart_relay()
        out, err = proc.communicate(timeout=60)
        r = json.loads(out)
        self.assertIn("restored=2", self.relay.read_log())
        for direction in ("set_to_icp", "icp_to_set"):
            d = r[direction]
            # What was lost is the restart's gap only: media (and SRTCP) goes on afterwards,
            # with the keys and rollover counters from Redis, not a single SRTP error.
            self.assertGreater(d["received"], d["sent"] * 0.5, d)
            self.assertEqual(d["srtp_errors"], 0, d)
            self.assertEqual(d["corrupted"], 0, d)
            self.assertGreater(d["rtcp_received"], d["rtcp_sent"] * 0.5, d)
        # The restarted relay's own counters (it listens on another API port, so the peer
        # could not delete its sessions): packets after the restart, all authentic.
        after = self.ctl.json("relay", "list")["sessions"]
        self.assertEqual(len(after), 2)
        for sess in after:
            st = sess["set"]["stats"]
            self.assertGreater(int(st["rtp_in"]["packets"]), 100, sess)
            self.assertGreater(int(st["rtcp_in"]["packets"]), 0, sess)
            self.assertEqual(int(st["dropped_auth_failure"]), 0, sess)
            self.assertEqual(int(st["dropped_replay"]), 0, sess)
            self.assertTrue(sess["set"]["latched"])
            self.ctl.ok("relay", "delete", sess["id"])
        self.assertIn("rwg_media_relay_srtp_auth_failures_total 0", self.metrics())


def thread_scheduling(pid, name):
    """(policy, real-time priority, nice) of the thread of process `pid` called `name`."""
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority,
                        os.getpriority(os.PRIO_PROCESS, tid))
    raise AssertionError(f"no thread {name} in process {pid}")


def may_use_real_time():
    return subprocess.run(["chrt", "-f", "1", "true"], capture_output=True).returncode == 0


class SchedulingTest(RelayFixture):
    """Packet workers real-time (SCHED_FIFO), housekeeping below normal: media first."""
    relay_args = ["--worker-scheduling", "fifo", "--worker-priority", "5"]
    peer = SrtpTest.peer
    assert_intact = SrtpTest.assert_intact

    def test_workers_run_real_time_and_carry_media(self):
        pid = self.relay.proc.pid
        policy, rt_priority, _ = thread_scheduling(pid, "rwg-worker-0")
        if may_use_real_time():
            self.assertEqual((policy, rt_priority), (os.SCHED_FIFO, 5))
            self.assertEqual(thread_scheduling(pid, "rwg-worker-1")[:2], (os.SCHED_FIFO, 5))
        else:
            # Without CAP_SYS_NICE: normal scheduling, and the log says why.
            self.assertEqual(policy, os.SCHED_OTHER)
            self.assertIn("CAP_SYS_NICE", self.relay.read_log())
        self.assertEqual(thread_scheduling(pid, "rwg-housekeep")[2], 10)
        r = self.peer("--streams", "2", "--packets", "500", "--interval-us", "2000")
        self.assertTrue(r["ok"], r["failures"])
        self.assert_intact(r, "set_to_icp", 1000)
        self.assert_intact(r, "icp_to_set", 1000)

    def test_bad_scheduling_is_refused_at_start(self):
        for args, message in (
                (["--worker-scheduling", "deadline"], "worker-scheduling: 'deadline' is not other"),
                (["--worker-scheduling", "fifo"], "worker-priority: priority 0: a real-time "
                                                  "priority (fifo) is 1..99"),
                (["--worker-priority", "-30"], "worker-priority: priority -30: a nice value is "
                                               "-20..19")):
            bad = subprocess.run([os.path.join(rwgtest.BIN, "media-relay"), "--secret-key-file",
                                  self.key, "--api-token-file", self.token, *args],
                                 capture_output=True, text=True, timeout=10)
            self.assertEqual(bad.returncode, 2, args)
            self.assertIn(message, bad.stderr)


class LibsrtpEngineTest(SrtpTest):
    """The relay on Debian's libsrtp2, the peer on rwg's OpenSSL engine: the two interoperate."""
    relay_args = ["--srtp-engine", "libsrtp"]

    def test_10000_packets_each_way_srtp_to_rtp_across_the_wrap(self):
        r = self.peer("--packets", "3000", "--interval-us", "400", "--first-seq", "65000",
                      "--srtp-engine", "openssl")
        self.assertTrue(r["ok"], r["failures"])
        self.assert_intact(r, "set_to_icp", 3000)
        self.assert_intact(r, "icp_to_set", 3000)
        self.assertIn("srtp_engine=libsrtp", self.relay.read_log())

    test_srtp_on_both_legs_with_32_bit_tags = None
    test_spoofed_source_gets_nothing_through = None
    test_restart_mid_stream_continues_from_redis = None


if __name__ == "__main__":
    unittest.main()
