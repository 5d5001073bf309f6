"""Helpers shared by the benchmarks in tools/bench."""
import csv
import os
import statistics
import subprocess

# A comparison repeated in rounds is "not measurable" when its rounds' ratios spread wider than
# this (highest - lowest, over the median): the machine's noise, not the two programs, would
# decide the figure.
MAX_SPREAD = 0.5


def summary(values):
    """(median, lowest, highest, spread) of repeated measurements; spread is (highest - lowest)
    / median (0 for one value)."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return med, lo, hi, ((hi - lo) / med if med else float("inf"))


def result_line(name, label, ratios, why_not=""):
    """The RESULT line of a comparison repeated in rounds: the median of the rounds' ratios,
    their spread and range. A round that could not give a ratio is None: when none did, or the
    spread is over MAX_SPREAD, the figure is `not-measurable` (followed by what was seen),
    never a ratio of 0."""
    got = [r for r in ratios if r is not None]
    tail = f"rounds={len(got)}/{len(ratios)}"
    if not got:
        return f"RESULT {name} {label}=not-measurable {tail}" + (f" ({why_not})" if why_not else "")
    med, lo, hi, spread = summary(got)
    figures = f"spread={100 * spread:.0f}% range={lo:.2f}-{hi:.2f} {tail}"
    if spread > MAX_SPREAD or len(got) * 2 <= len(ratios):
        return (f"RESULT {name} {label}=not-measurable median={med:.2f} {figures} (the rounds "
                f"disagree beyond {100 * MAX_SPREAD:.0f}%, or most gave no figure"
                + (f"; {why_not}" if why_not else "") + ")")
    return f"RESULT {name} {label}={med:.2f} {figures}"


def pinned(cpu, argv):
    """argv run on one CPU only."""
    return ["taskset", "-c", str(cpu)] + argv


def pin(pid, cpu):
    """Moves every thread of a running process to one CPU."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for t in tasks:
        subprocess.run(["taskset", "-cp", str(cpu), t], capture_output=True)


def kamailio_pids(pid_file):
    """Kamailio's processes; empty when it is gone (it removes its pid file on exit)."""
    try:
        with open(pid_file) as f:
            main = int(f.read().strip())
    except (OSError, ValueError):
        return []
    out = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout
    return [main] + [int(p) for p in out.split()]


def core_busy_seconds(cpu):
    """Non-idle time of one CPU, in seconds."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def sipp_totals(stat_path):
    """The last row of a sipp -trace_stat file as {column: value}; {} when unreadable."""
    try:
        with open(stat_path) as f:
            rows = list(csv.reader(f, delimiter=";"))
        return dict(zip(rows[0], rows[-1]))
    except (OSError, IndexError):
        return {}


class RwgCallStack:
    """rwg carrying remote phones' calls to an iPBX, as tools/bench/calls and tools/soak run it.

    Redis (AOF every second), control, the iPBX (Kamailio: authentication, location,
    record-route) with an office extension behind it (sipp answering with plain RTP), `phones`
    devices u<i> (set-side password spw-<i>-secret, ICP-side n<i>/ipw-<i>), then the media relay
    and the SIP edge pinned to CPU `edge_cpu`; everything else on `load_cpu`. Each started
    process's stop function is appended to `procs` (the caller stops them in reverse)."""

    def __init__(self, tmp, procs, phones, domain, office_number, office_scenario,
                 relay_token, port_min, port_max, edge_cpu=0, load_cpu=1, edge_args=()):
        import rwgtest
        self.tmp, self.phones, self.domain = tmp, phones, domain
        self.certs = rwgtest.make_certs(tmp)
        os.mkdir(os.path.join(tmp, "redis"))
        self.redis = rwgtest.Redis(os.path.join(tmp, "redis"), fsync="everysec").start()
        procs.append(self.redis.kill)
        pin(self.redis.proc.pid, load_cpu)
        self.key = os.path.join(tmp, "secret.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex())
        pw = os.path.join(tmp, "admin-password")
        with open(pw, "w") as f:
            f.write("bench-admin-password")
        self.token = os.path.join(tmp, "relay-token")
        with open(self.token, "w") as f:
            f.write(relay_token + "\n")
        redis_address = f"127.0.0.1:{self.redis.port}"
        self.control = rwgtest.Service("control", tmp, [
            "--redis-address", redis_address, "--secret-key-file", self.key,
            "--admin-password-file", pw, "--tls-cert-file", self.certs["cert"],
            "--tls-key-file", self.certs["key"]]).start()
        procs.append(self.control.stop)
        pin(self.control.proc.pid, load_cpu)
        self.ctl = rwgtest.Rwgctl(self.control.grpc_address, self.certs["ca"],
                                  os.path.join(tmp, "cli"))
        rwgtest.wait_until("control", lambda: self.ctl.run("health").stdout.strip() == "SERVING")
        self.ctl.ok("login", password="bench-admin-password")

        # The iPBX, and the office extension behind it.
        ipbx_dir = os.path.join(tmp, "ipbx")
        os.mkdir(ipbx_dir)
        self.ipbx = rwgtest.Kamailio(ipbx_dir, "127.0.0.2",
                                     {f"n{i}": f"ipw-{i}" for i in range(phones)},
                                     extra_args=["-m", "512", "-M", "64"]).start()
        procs.append(self.ipbx.stop)
        for pid in kamailio_pids(self.ipbx.pid_file):
            pin(pid, load_cpu)
        office_port = rwgtest.free_port()
        office = subprocess.Popen(pinned(load_cpu, [
            "sipp", "-sf", office_scenario, "-i", "127.0.0.4", "-p", str(office_port), "-t", "u1",
            "-nostdin", "-mp", "6000"]), cwd=tmp, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "office.err"), "w"))
        procs.append(lambda: (office.kill(), office.wait()))
        self.office = office
        self.ipbx.rpc("ul.add", "location", f"s:{office_number}",
                      f"sip:office@127.0.0.4:{office_port}", "86400", "1.0", "s:0", "0", "0", "0")
        if office_number not in self.ipbx.registered():
            raise RuntimeError("the iPBX did not take the office extension's contact")

        self.ctl.ok("config", "set", f"public_name={domain}", "icp.host=127.0.0.2",
                    f"icp.sip_port={self.ipbx.port}", "icp.sip_transports=tcp",
                    f"licences.teleworker={phones + 10}")
        rows = ["set_username,set_password,icp_username,icp_password"]
        rows += [f"u{i},spw-{i}-secret,n{i},ipw-{i}" for i in range(phones)]
        with open(os.path.join(tmp, "devices.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
        self.ctl.ok("device", "import", os.path.join(tmp, "devices.csv"))

        # rwg: media relay and SIP edge.
        self.relay = rwgtest.Service("media-relay", tmp, [
            "--redis-address", redis_address, "--secret-key-file", self.key,
            "--api-token-file", self.token, "--bind-address", "127.0.0.1", "--port-min", port_min,
            "--port-max", port_max, "--workers", "1", "--log-level", "warn"]).start()
        procs.append(self.relay.stop)
        pin(self.relay.proc.pid, edge_cpu)
        self.tls_port = rwgtest.free_port()
        self.edge = rwgtest.Service("sip-edge", tmp, [
            "--redis-address", redis_address, "--secret-key-file", self.key,
            "--sip-tls-listen", f"127.0.0.1:{self.tls_port}", "--sip-tcp-listen", "",
            "--icp-listen", f"127.0.0.1:{rwgtest.free_port()}",
            "--sip-tls-cert-file", self.certs["cert"], "--sip-tls-key-file", self.certs["key"],
            # rtpengine's control protocol is plaintext: rwg's relay API is too, here.
            "--relay-token-file", self.token, "--relay-plaintext", "--pike-requests", "1000000000",
            "--max-connections-per-source", "0",
            # Each of the few scripted phones stands for many: up to a hundred calls at once
            # each at the top steps (a real phone has a handful).
            "--max-calls-per-device", "1000",
            "--log-level", "warn", *edge_args]).start()
        procs.append(self.edge.stop)
        pin(self.edge.proc.pid, edge_cpu)

    def phones_file(self, name, number):
        """A sipp injection file of the devices: user; authentication; domain; `number`."""
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(self.phones):
                f.write(f"u{i};[authentication username=u{i} password=spw-{i}-secret];"
                        f"{self.domain};{number}\n")
        return path

    def tunnel(self, procs, cpu=1):
        """An stunnel carrying sipp's TCP into TLS toward the edge; its local port."""
        import rwgtest
        import time
        port = rwgtest.free_port()
        conf = os.path.join(self.tmp, f"stunnel-{port}.conf")
        with open(conf, "w") as f:
            f.write(f"foreground = yes\npid =\ndebug = 3\n\n[rwg]\nclient = yes\n"
                    f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{self.tls_port}\n"
                    "sslVersionMin = TLSv1.2\n")
        stunnel = subprocess.Popen(pinned(cpu, ["stunnel4", conf]), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        procs.append(stunnel.kill)
        time.sleep(0.5)
        return port
