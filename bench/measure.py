#!/usr/bin/env python3
"""Run a command and report its wall time and the peak RSS of its whole
process tree (the command and every descendant, summed), sampled every 50 ms.

usage: measure.py LABEL INPUT_BYTES -- COMMAND...
Prints one JSON line: {"label", "seconds", "peak_rss_mib", "input_mib", "exit"}.
"""
import json
import os
import subprocess
import sys
import time


def children_map():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(pid))
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            pass
    return kids


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_rss(root):
    kids = children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss_kib(pid)
        stack.extend(kids.get(pid, []))
    return total


def main():
    label, input_bytes = sys.argv[1], int(sys.argv[2])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    seconds = time.monotonic() - start
    print(json.dumps({
        "label": label,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "input_mib": round(input_bytes / (1 << 20), 1),
        "exit": proc.returncode,
    }), flush=True)
    sys.exit(proc.returncode)


main()
