#!/usr/bin/env python3
"""A lock-step boot storm for benches/tftp-peers.sh: COUNT separate `curl`
processes fetch the same file at once over TFTP (blksize from --blksize, no
windowsize: curl asks for none, so every transfer is lock-step, as iPXE and
pxelinux are). Prints one line in the format of examples/tftp-get:

    ok=N failed=N bytes=N wall_s=S mb_s=R min_s=S median_s=S max_s=S

wall_s runs from the first launch to the last exit; mb_s is the aggregate
(bytes of successful transfers / wall_s, 10^6 B/s); min/median/max_s are
the clients' own times (curl's time_total). Each curl is bounded by
--max-time; with --cpu every curl runs under `taskset -c CPU`.
"""
import argparse
import statistics
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--server", required=True, help="HOST:PORT (loopback)")
p.add_argument("--file", required=True)
p.add_argument("--size", type=int, required=True, help="expected bytes per transfer")
p.add_argument("--count", type=int, default=256)
p.add_argument("--blksize", type=int, default=1468)
p.add_argument("--cpu", help="pin the clients to this CPU list (taskset -c)")
p.add_argument("--max-time", type=int, default=300)
a = p.parse_args()

cmd = ["curl", "-s", "-S", "--max-time", str(a.max_time), "--tftp-blksize", str(a.blksize),
       "-o", "/dev/null", "-w", "%{size_download} %{time_total}\n",
       f"tftp://{a.server}/{a.file}"]
if a.cpu is not None:
    cmd = ["taskset", "-c", a.cpu] + cmd

start = time.monotonic()
procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
         for _ in range(a.count)]
times, ok, failed, errors = [], 0, 0, []
for pr in procs:
    out, err = pr.communicate()
    fields = out.split()
    if pr.returncode == 0 and len(fields) == 2 and int(float(fields[0])) == a.size:
        ok += 1
        times.append(float(fields[1]))
    else:
        failed += 1
        errors.append(f"rc={pr.returncode} {out.strip()} {err.strip()}")
wall = time.monotonic() - start
for e in errors[:5]:
    print(f"tftp-storm: failed: {e}", file=sys.stderr)
nbytes = ok * a.size
mb_s = nbytes / wall / 1e6 if wall > 0 else 0.0
fmt = lambda x: f"{x:.3f}"
if times:
    stats = f"min_s={fmt(min(times))} median_s={fmt(statistics.median(times))} max_s={fmt(max(times))}"
else:
    stats = "min_s=nan median_s=nan max_s=nan"
print(f"ok={ok} failed={failed} bytes={nbytes} wall_s={fmt(wall)} mb_s={mb_s:.1f} {stats}")
