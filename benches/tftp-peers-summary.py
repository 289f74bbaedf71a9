#!/usr/bin/env python3
"""Summarises the results.tsv of benches/tftp-peers.sh as Markdown tables:
medians over repetitions, ours/theirs ratios, server CPU ms per MB, peak RSS."""
import statistics
import sys
from collections import defaultdict

path, big_mib, reps = sys.argv[1], sys.argv[2], sys.argv[3]
storm_count = sys.argv[4] if len(sys.argv) > 4 else "256"
storm_mib = sys.argv[5] if len(sys.argv) > 5 else "4"
runs = defaultdict(list)
for raw in open(path):
    f = raw.rstrip("\n").split("\t")
    if len(f) < 9:
        continue
    file, server, pin, blk, win, count, cpu_us, rss = f[:8]
    kv = dict(x.split("=", 1) for x in f[8].split())
    mb = int(kv["bytes"]) / 1e6
    runs[(file, pin, int(blk), int(win), int(count), server)].append({
        "mb_s": float(kv["mb_s"]),
        "failed": int(kv["failed"]),
        "cpu_ms_mb": int(cpu_us) / 1000 / mb if mb else None,
        "rss_mib": int(rss) / 1024,
        "max_s": float(kv["max_s"]),
    })

SERVERS = ("ours", "atftpd", "tftp-hpa")


def med(key, k, server):
    xs = [r[key] for r in runs.get(k + (server,), []) if r[key] is not None]
    return statistics.median(xs) if xs else None


def fmt(x, d=1):
    return "–" if x is None or x != x else f"{x:.{d}f}"


def ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}×"


def paired(key, k, a, b):
    """Median over repetitions of a/b, each pair measured back to back in
    the same repetition (steadier than a ratio of medians while the
    machine's load drifts)."""
    xs, ys = runs.get(k + (a,), []), runs.get(k + (b,), [])
    rs = [x[key] / y[key] for x, y in zip(xs, ys)
          if x[key] is not None and y[key] and x[key] == x[key] and y[key] == y[key]]
    return "–" if not rs else f"{statistics.median(rs):.2f}×"


configs = sorted({k[:5] for k in runs})

storms = [k for k in configs if k[0] == "storm"]
if storms:
    print(f"\nLock-step boot storm: {storm_count} concurrent `curl` processes, each fetching the "
          f"{storm_mib} MiB file (blksize 1468, no windowsize: lock-step), medians of {reps} runs: aggregate "
          "MB/s (bytes / time from the first launch to the last exit), slowest client's time (s), "
          "failures over all runs, server CPU ms per MB. own: server on CPU 0, clients on CPU 1; "
          "shared: nothing pinned (ours runs one event loop per CPU). Ratios: medians of the "
          "per-repetition ratios against the best peer of that repetition (by MB/s; for the "
          "slowest client, the lowest).\n")
    print("| placement | ours MB/s | atftpd MB/s | tftp-hpa MB/s | ours/best peer | slowest ours "
          "| slowest atftpd | slowest hpa | ours/best peer slowest | failed ours/atftpd/hpa "
          "| CPU ours | CPU atftpd | CPU hpa |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for k in storms:
        sp = [med("mb_s", k, s) for s in SERVERS]
        slow = [med("max_s", k, s) for s in SERVERS]
        cpu = [med("cpu_ms_mb", k, s) for s in SERVERS]
        fails = "/".join(str(sum(r["failed"] for r in runs.get(k + (s,), []))) for s in SERVERS)
        ours, a, h = (runs.get(k + (s,), []) for s in SERVERS)
        agg = [o["mb_s"] / max(x["mb_s"], y["mb_s"]) for o, x, y in zip(ours, a, h)
               if max(x["mb_s"], y["mb_s"]) > 0]
        sl = [o["max_s"] / min(x["max_s"], y["max_s"]) for o, x, y in zip(ours, a, h)
              if min(x["max_s"], y["max_s"]) > 0]
        r = lambda xs: "–" if not xs else f"{statistics.median(xs):.2f}×"
        print(f"| {k[1]} | {fmt(sp[0])} | {fmt(sp[1])} | {fmt(sp[2])} | {r(agg)} "
              f"| {fmt(slow[0], 2)} | {fmt(slow[1], 2)} | {fmt(slow[2], 2)} | {r(sl)} | {fails} "
              f"| {fmt(cpu[0], 2)} | {fmt(cpu[1], 2)} | {fmt(cpu[2], 2)} |")

before = [k for k in configs if runs.get(k + ("before",)) and runs.get(k + ("ours",))]
if before:
    print(f"\nBefore/after: ours = this tree's examples/tftp-server, before = the --before "
          f"binary, same runs, medians of {reps}; after/before = median of the per-repetition "
          "ratios (MB/s, and the slowest client's time for concurrent runs; below 1 is better "
          "for the slowest).\n")
    print("| file | placement/client CPU | blksize | window | transfers | after MB/s | before MB/s "
          "| after/before MB/s | after slowest | before slowest | after/before slowest "
          "| CPU after | CPU before | failed after/before |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in before:
        fails = "/".join(str(sum(r["failed"] for r in runs.get(k + (s,), []))) for s in ("ours", "before"))
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]} | {fmt(med('mb_s', k, 'ours'))} "
              f"| {fmt(med('mb_s', k, 'before'))} | {paired('mb_s', k, 'ours', 'before')} "
              f"| {fmt(med('max_s', k, 'ours'), 2)} | {fmt(med('max_s', k, 'before'), 2)} "
              f"| {paired('max_s', k, 'ours', 'before')} | {fmt(med('cpu_ms_mb', k, 'ours'), 2)} "
              f"| {fmt(med('cpu_ms_mb', k, 'before'), 2)} | {fails} |")

if not any(k[0] == "big.bin" for k in configs):
    sys.exit(0)
print(f"\nOne {big_mib} MiB transfer, medians of {reps} runs. MB/s = 10^6 B/s; CPU = "
      "server CPU ms per MB; ratios are medians of the per-repetition ratios. Server on CPU 0; client on CPU 1 (cross) or CPU 0 (same). "
      "tftp-hpa has no windowsize. raw UDP: benches/udp-window.rs, same datagrams and "
      "window, no TFTP (blocking sockets, one sendto per datagram).\n")
print("| client CPU | blksize | window | ours MB/s | atftpd MB/s | tftp-hpa MB/s | raw UDP MB/s "
      "| ours/atftpd | ours/hpa | ours/raw | CPU ours | CPU atftpd | CPU hpa | CPU raw | failed |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for k in configs:
    if k[0] != "big.bin":
        continue
    _, pin, blk, win, _ = k
    sp = [med("mb_s", k, s) for s in SERVERS]
    raw = med("mb_s", k, "raw-udp")
    cpu = [med("cpu_ms_mb", k, s) for s in SERVERS]
    cpu_raw = med("cpu_ms_mb", k, "raw-udp")
    failed = sum(r["failed"] for s in SERVERS for r in runs.get(k + (s,), []))
    print(f"| {pin} | {blk} | {win} | {fmt(sp[0])} | {fmt(sp[1])} | {fmt(sp[2])} | {fmt(raw)} "
          f"| {paired('mb_s', k, 'ours', 'atftpd')} | {paired('mb_s', k, 'ours', 'tftp-hpa')} "
          f"| {paired('mb_s', k, 'ours', 'raw-udp')} "
          f"| {fmt(cpu[0], 2)} | {fmt(cpu[1], 2)} | {fmt(cpu[2], 2)} | {fmt(cpu_raw, 2)} | {failed} |")

print(f"\nServer CPU per MB against tftp-hpa's lock-step, medians of {reps} per-repetition "
      "ratios. Lock-step: the client asks for windowsize 1. Raw UDP lock-step: a blocking "
      "loop that only receives the ACK and sends the next datagram (no file, no TFTP): the "
      "floor of any lock-step server here. Same request, window 16: the client asks every "
      "server for windowsize 16; tftp-hpa does not grant it (no windowsize support) and runs "
      "lock-step, so its side is its windowsize-1 run of the same repetition.\n")
print("| client CPU | blksize | ours ÷ hpa, lock-step | raw UDP ÷ hpa, lock-step "
      "| ours (window 16) ÷ hpa, same request |")
print("|---|---:|---:|---:|---:|")
for pin in ("cross", "same"):
    for blk in sorted({k[2] for k in configs}):
        k1 = ("big.bin", pin, blk, 1, 1)
        k16 = ("big.bin", pin, blk, 16, 1)
        if k1 + ("tftp-hpa",) not in runs:
            continue
        hpa = runs.get(k1 + ("tftp-hpa",), [])
        w16 = runs.get(k16 + ("ours",), [])
        rs = [a["cpu_ms_mb"] / b["cpu_ms_mb"] for a, b in zip(w16, hpa)
              if a["cpu_ms_mb"] is not None and b["cpu_ms_mb"]]
        same_req = "–" if not rs else f"{statistics.median(rs):.2f}×"
        print(f"| {pin} | {blk} | {paired('cpu_ms_mb', k1, 'ours', 'tftp-hpa')} "
              f"| {paired('cpu_ms_mb', k1, 'raw-udp', 'tftp-hpa')} | {same_req} |")

print(f"\nConcurrent 4 MiB transfers (blksize 1468, windowsize 16; tftp-hpa lock-step), "
      f"client on CPU 1, medians of {reps} runs: aggregate MB/s, slowest client's time (s), "
      "failures over all runs, server peak RSS (MiB, with children), CPU ms per MB.\n")
print("| transfers | ours MB/s | atftpd MB/s | tftp-hpa MB/s | ours/best peer "
      "| slowest ours | slowest atftpd | slowest hpa | ours/atftpd slowest "
      "| failed ours/atftpd/hpa | RSS ours | RSS atftpd | RSS hpa "
      "| CPU ours | CPU atftpd | CPU hpa |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for k in configs:
    if k[0] != "small.bin":
        continue
    sp = [med("mb_s", k, s) for s in SERVERS]
    slow = [med("max_s", k, s) for s in SERVERS]
    rss = [max((r["rss_mib"] for r in runs.get(k + (s,), [])), default=None) for s in SERVERS]
    cpu = [med("cpu_ms_mb", k, s) for s in SERVERS]
    fails = "/".join(str(sum(r["failed"] for r in runs.get(k + (s,), []))) for s in SERVERS)
    best = max((x for x in sp[1:] if x is not None), default=None)
    print(f"| {k[4]} | {fmt(sp[0])} | {fmt(sp[1])} | {fmt(sp[2])} | {ratio(sp[0], best)} "
          f"| {fmt(slow[0], 2)} | {fmt(slow[1], 2)} | {fmt(slow[2], 2)} "
          f"| {paired('max_s', k, 'ours', 'atftpd')} | {fails} | {fmt(rss[0])} | {fmt(rss[1])} "
          f"| {fmt(rss[2])} | {fmt(cpu[0], 2)} | {fmt(cpu[1], 2)} | {fmt(cpu[2], 2)} |")

rows = [k for k in configs if runs.get(k + ("ours-nobatch",))]
if rows:
    print(f"\nWindow batching (UDP GSO, one send per window) on vs off (--no-batch), same run, "
          f"medians of {reps} runs; concurrent rows: 4 MiB transfers, client on CPU 1.\n")
    print("| client CPU | blksize | window | transfers | MB/s on | MB/s off | on/off "
          "| CPU on | CPU off | CPU on/off |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in rows:
        _, pin, blk, win, count = k
        on, off = med("mb_s", k, "ours"), med("mb_s", k, "ours-nobatch")
        con, coff = med("cpu_ms_mb", k, "ours"), med("cpu_ms_mb", k, "ours-nobatch")
        print(f"| {pin} | {blk} | {win} | {count} | {fmt(on)} | {fmt(off)} "
              f"| {paired('mb_s', k, 'ours', 'ours-nobatch')} | {fmt(con, 2)} | {fmt(coff, 2)} "
              f"| {paired('cpu_ms_mb', k, 'ours', 'ours-nobatch')} |")
