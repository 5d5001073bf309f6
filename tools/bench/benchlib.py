"""Helpers shared by the SIP benchmarks in tools/bench (sip-register, calls)."""
import csv
import os
import subprocess


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
