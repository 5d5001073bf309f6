"""Integration: the SIP edge attacked with the tools attackers use (sipvicious: svmap, svwar,
svcrack) over UDP, while a legitimate phone on another address keeps registering and calling.

What must hold: no extension is learnt (every user gets the same answers), the cracking source
is banned within the thresholds and never finds the password even when its word list holds it,
the edge stays up, and the phone elsewhere is served throughout.
"""
import os
import shutil
import subprocess
import threading
import time
import unittest

import rwgtest
import sipclient
import sipua
from test_calls import OFFICE_USER, PUBLIC
from test_sip_edge import DEVICES
from test_topology import TopologyFixture


@unittest.skipUnless(shutil.which("svwar") and shutil.which("svcrack"),
                     "sipvicious is installed by tools/rwg deps")
class SipviciousTest(TopologyFixture):
    # Production thresholds for floods and guessing.
    edge_args = ["--pike-requests", "16", "--pike-window-seconds", "2", "--ban-seconds", "60",
                 "--auth-failures", "5", "--auth-window-seconds", "300",
                 "--auth-ban-seconds", "600"]

    def setUp(self):
        self.udp_port = rwgtest.free_port()
        self.edge_args = self.edge_args + ["--sip-udp-listen", f"127.0.0.1:{self.udp_port}"]
        super().setUp()
        self.stop_phone = threading.Event()
        self.phone_results = []

    def tool(self, *argv, timeout=120):
        # The attacker sends from 127.0.0.1; the phone elsewhere uses 127.0.0.5.
        r = subprocess.run([*argv, f"udp://127.0.0.1:{self.udp_port}"],
                           capture_output=True, text=True, timeout=timeout,
                           cwd=self.tmp, env=dict(os.environ, HOME=self.tmp))
        return r.stdout + r.stderr

    def legitimate_phone(self, office):
        """1002 over TLS from 127.0.0.5: registers and calls the office every second."""
        while not self.stop_phone.is_set():
            try:
                conn = sipclient.SipConnection("127.0.0.1", self.tls_port, tls=True,
                                               ca=self.certs["ca"], source="127.0.0.5")
                r = conn.register_with_auth("1002", DEVICES["1002"][0], PUBLIC)
                ok = sipclient.status(r) == 200
                if ok:
                    ua = sipua.UA(conn, "1002", PUBLIC)
                    out = ua.dial(OFFICE_USER, PUBLIC)
                    inc = office.next_call()
                    office.answer(inc)
                    ua.wait("answered", lambda: out.status == 200)
                    ua.bye(out)
                    office.wait("BYE", lambda: "BYE<" in inc.events)
                    ua.close()
                else:
                    conn.close()
                self.phone_results.append(ok)
            except (AssertionError, OSError) as e:
                self.phone_results.append(f"{type(e).__name__}: {e}")
            time.sleep(1)

    def test_sipvicious_learns_nothing_and_is_banned_while_a_phone_works(self):
        phone = threading.Thread(target=self.legitimate_phone, args=(self.office(),),
                                 daemon=True)
        phone.start()
        self.addCleanup(self.stop_phone.set)

        out = self.tool("svmap", "-p", str(self.udp_port), timeout=60)
        self.assertNotIn("Traceback", out)

        # Extension enumeration: 1001 and 1002 exist, the others do not; REGISTER answers
        # must not tell them apart.
        # Slow enough to stay under the flood limit: the answers alone must tell nothing.
        out = self.tool("svwar", "-e1000-1010", "-m", "REGISTER", "-t", "0.25", "--force",
                        timeout=120)
        self.assertIn("found nothing", out)
        # What svwar learnt is in its result table ("| 1001 | reqauth |"); its log may quote
        # whole answers, whose Call-ID is svwar's own random number (once "1001448098").
        for ext in ("1001", "1002"):
            self.assertNotRegex(out, rf"\|\s*{ext}\s*\|", f"svwar learnt an extension:\n{out}")

        # Password cracking with the right password in the list (10th word).
        words = os.path.join(self.tmp, "words.txt")
        with open(words, "w") as f:
            f.write("\n".join([f"guess{i}" for i in range(9)] + [DEVICES["1001"][0]]
                              + [f"later{i}" for i in range(20)]) + "\n")
        out = self.tool("svcrack", "-u1001", "-d", words, "-t", "0.25", timeout=180)
        self.assertNotIn(DEVICES["1001"][0], out, f"svcrack found the password:\n{out}")
        self.assertIn("found nothing", out)
        bans = self.ctl.json("ban", "list")["bans"]
        self.assertIn("auth:127.0.0.1|1001", [b["id"] for b in bans])

        # svwar gives up by itself: "Bad user = SIP/2.0 401 - svwar will probably not work!".
        self.assertIn("will probably not work", self.tool(
            "svwar", "-e2000-2999", "-m", "REGISTER", "--force", timeout=120))
        # Cracking at full speed is a flood: the source is banned (in the kernel too).
        out = self.tool("svcrack", "-u1002", "-r1-400", timeout=120)
        self.assertNotIn("| 1002", out)
        bans = self.ctl.json("ban", "list")["bans"]
        self.assertIn("src:127.0.0.1", [b["id"] for b in bans])
        self.assertFalse(any("127.0.0.5" in b["id"] for b in bans), bans)
        self.assertTrue(self.edge.alive())

        time.sleep(3)
        self.stop_phone.set()
        phone.join(60)
        self.assertGreaterEqual(len(self.phone_results), 3, self.phone_results)
        self.assertEqual([r for r in self.phone_results if r is not True], [],
                         "the legitimate phone was not served throughout")


if __name__ == "__main__":
    unittest.main()
