#!/usr/bin/env bash
# TFTP servers side by side on loopback, in one run: ours (examples/tftp-server),
# tftp-hpa (in.tftpd) and atftpd, all fetched by the same client
# (examples/tftp-get, on the crate's client engine).
#
#   bash benches/tftp-peers.sh [--quick] [--reps N] [--out DIR] [--before BIN]
#                              [--storm-only] [--storm-count N] [--storm-mib N]
#
# Single transfers of a 64 MiB file at blksize 512/1468/8192/65464 and
# windowsize 1/16/64 (tftp-hpa has no windowsize: it runs at windowsize 1
# only), then 1/16/64/256 concurrent 4 MiB transfers (blksize 1468,
# windowsize 16), and raw UDP with the same datagrams and window
# (benches/udp-window.rs: blocking sockets, one datagram per sendto, no file,
# no TFTP) as a baseline, and ours with window batching off (--no-batch:
# one send per block) to show what batching changes. Servers run on CPU 0; the client runs on CPU 1
# ("cross": realistic, RTT across vCPUs) and on CPU 0 ("same": per-packet
# cost, no cross-CPU wake-ups). Prints medians over the repetitions,
# ours/theirs ratios, server CPU time per MB (utime+stime+cutime+cstime from
# /proc/PID/stat, deltas around each transfer) and the server's peak RSS
# (process plus children) during the concurrent runs.
#
# The lock-step boot storm (issue 12): --storm-count (256) separate `curl`
# processes fetch a file of --storm-mib (4) MiB at once, blksize 1468, no windowsize
# (lock-step), through benches/tftp-storm.py: aggregate MB/s and the slowest
# client's time, in two placements: "own" (server on CPU 0, the curls on
# CPU 1) and "shared" (neither pinned: the server shares every core with
# the clients; ours then runs one event loop per core, pinned to CPU 0 it
# runs one). --storm-only runs only the storm.
#
# --before BIN adds a second build of our examples/tftp-server (e.g. main's,
# before a change) as the server "before", measured in the same runs as
# "ours" (the build of this tree), with a before/after table.
#
# Needs root only to unpack the peers (apt-get download + dpkg -x into a
# private directory: no package is installed, no daemon is left on :69;
# their shared libraries libwrap0 and libpcre2-8-0 are installed with apt
# if missing). Every server listens on 127.0.0.1 only; every client run is
# bounded by `timeout`; only the processes this script started are stopped,
# by PID.
set -euo pipefail

QUICK=0
REPS=3
OUT=""
BEFORE=""
STORM_ONLY=0
STORM_COUNT=256
STORM_MIB=4
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; REPS=1 ;;
        --reps) REPS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --before) BEFORE="$(realpath "$2")"; shift ;;
        --storm-only) STORM_ONLY=1 ;;
        --storm-count) STORM_COUNT="$2"; shift ;;
        --storm-mib) STORM_MIB="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--reps N] [--out DIR] [--before BIN] [--storm-only] [--storm-count N] [--storm-mib N]" >&2; exit 2 ;;
    esac
    shift
done
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "--before: $BEFORE is not an executable" >&2; exit 2; }

HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/tftp-peers.XXXXXX)"
OUT="${OUT:-$WORK}"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
PIDS=()
CGROUPS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for cg in "${CGROUPS[@]}"; do rmdir "$cg" 2>/dev/null || true; done
    rm -rf "$WORK/root" "$WORK/debs"
}
trap cleanup EXIT

# --- build our server, the client and the raw UDP baseline -------------------
(cd "$HERE" && cargo build --release --quiet --example tftp-server --example tftp-get)
BIN="$HERE/target/release/examples"
RAW="$(cd "$HERE" && cargo bench --quiet --bench udp-window --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "udp-window":
        print(m["executable"])')"
[ -x "$RAW" ] || { echo "benches/udp-window did not build" >&2; exit 1; }

# --- peers, unpacked privately ----------------------------------------------
PEERS="$WORK/peers"
mkdir -p "$WORK/debs" "$PEERS"
need_libs=()
for lib in libwrap0 libpcre2-8-0; do
    dpkg -s "$lib" >/dev/null 2>&1 || need_libs+=("$lib")
done
if [ ${#need_libs[@]} -gt 0 ]; then
    apt-get install -y -qq "${need_libs[@]}" >/dev/null
fi
(cd "$WORK/debs" && chmod 777 . && apt-get download -qq tftpd-hpa atftpd >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null && (cd "$WORK/debs" && apt-get download -qq tftpd-hpa atftpd >/dev/null)
}
for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$PEERS"; done
HPA="$PEERS/usr/sbin/in.tftpd"
ATFTPD="$PEERS/usr/sbin/atftpd"
[ -x "$HPA" ] && [ -x "$ATFTPD" ] || { echo "peers missing after unpacking" >&2; exit 1; }

# --- files -------------------------------------------------------------------
ROOT="$WORK/root"
mkdir -p "$ROOT"
chmod 755 "$WORK" "$ROOT"
BIG_MIB=64
[ "$QUICK" = 1 ] && BIG_MIB=16
head -c $((BIG_MIB << 20)) /dev/urandom > "$ROOT/big.bin"
head -c $((4 << 20)) "$ROOT/big.bin" > "$ROOT/small.bin"
head -c $((STORM_MIB << 20)) /dev/urandom > "$ROOT/storm.bin"
chmod 644 "$ROOT"/*.bin

# --- servers (CPU 0, loopback) ----------------------------------------------
PORT_OURS=16901
PORT_HPA=16902
PORT_ATFTPD=16903
PORT_RAW=16904
PORT_NOBATCH=16905
RUST_LOG=warn taskset -c 0 "$BIN/tftp-server" --root "$ROOT" --bind 127.0.0.1 \
    --port $PORT_OURS --max-transfers 1024 --max-per-client 1024 2>"$WORK/ours.log" &
PID_OURS=$!; PIDS+=("$PID_OURS")
taskset -c 0 "$HPA" -L -a 127.0.0.1:$PORT_HPA -u nobody -B 65464 -s "$ROOT" 2>"$WORK/hpa.log" &
PID_HPA=$!; PIDS+=("$PID_HPA")
taskset -c 0 "$ATFTPD" --daemon --no-fork --port $PORT_ATFTPD --bind-address 127.0.0.1 \
    --maxthread 1024 --user nobody --group nogroup --logfile /dev/null "$ROOT" 2>"$WORK/atftpd.log" &
PID_ATFTPD=$!; PIDS+=("$PID_ATFTPD")
# Ours again with window batching (GSO) off, for the before/after table.
RUST_LOG=warn taskset -c 0 "$BIN/tftp-server" --root "$ROOT" --bind 127.0.0.1 \
    --port $PORT_NOBATCH --max-transfers 1024 --max-per-client 1024 --no-batch 2>"$WORK/ours-nobatch.log" &
PID_NOBATCH=$!; PIDS+=("$PID_NOBATCH")
taskset -c 0 "$RAW" serve $PORT_RAW &
PID_RAW=$!; PIDS+=("$PID_RAW")

declare -A PID_OF=([ours]=$PID_OURS [tftp-hpa]=$PID_HPA [atftpd]=$PID_ATFTPD [raw-udp]=$PID_RAW [ours-nobatch]=$PID_NOBATCH)
declare -A PORT_OF=([ours]=$PORT_OURS [tftp-hpa]=$PORT_HPA [atftpd]=$PORT_ATFTPD [raw-udp]=$PORT_RAW [ours-nobatch]=$PORT_NOBATCH)

# The "shared" storm placement: the same servers again, not pinned (keys
# SERVER@shared). Ours then runs its default, one event loop per CPU.
PORT_SHARED=16911
start_ours() { # KEY PORT BINARY [TASKSET...]
    local key=$1 port=$2 bin=$3; shift 3
    RUST_LOG=warn "$@" "$bin" --root "$ROOT" --bind 127.0.0.1 \
        --port "$port" --max-transfers 1024 --max-per-client 1024 2>"$WORK/$key.log" &
    PID_OF[$key]=$!; PORT_OF[$key]=$port; PIDS+=("$!")
}
start_ours ours@shared $PORT_SHARED "$BIN/tftp-server"
"$HPA" -L -a 127.0.0.1:$((PORT_SHARED + 1)) -u nobody -B 65464 -s "$ROOT" 2>"$WORK/hpa-shared.log" &
PID_OF[tftp-hpa@shared]=$!; PORT_OF[tftp-hpa@shared]=$((PORT_SHARED + 1)); PIDS+=("$!")
"$ATFTPD" --daemon --no-fork --port $((PORT_SHARED + 2)) --bind-address 127.0.0.1 \
    --maxthread 1024 --user nobody --group nogroup --logfile /dev/null "$ROOT" 2>"$WORK/atftpd-shared.log" &
PID_OF[atftpd@shared]=$!; PORT_OF[atftpd@shared]=$((PORT_SHARED + 2)); PIDS+=("$!")
SERVERS_RUN=(ours atftpd tftp-hpa)
if [ -n "$BEFORE" ]; then
    start_ours before 16906 "$BEFORE" taskset -c 0
    start_ours before@shared $((PORT_SHARED + 3)) "$BEFORE"
    SERVERS_RUN+=(before)
fi
sleep 1
for p in "${PID_OF[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "a server did not start (pid $p); logs in $WORK" >&2; exit 1; }
done

# Server CPU time in µs: from a cgroup of its own when one can be made (it
# counts forked children, e.g. tftp-hpa's per-transfer processes, even after
# they exit), else utime+stime+cutime+cstime from /proc/PID/stat.
declare -A CG_OF=()
for server in "${!PID_OF[@]}"; do
    pid=${PID_OF[$server]}
    if [ -d /sys/fs/cgroup/cpuacct ]; then
        cg="/sys/fs/cgroup/cpuacct/tftp-peers-$$-${server/@/-}"
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        cg="/sys/fs/cgroup/tftp-peers-$$-${server/@/-}"
    else
        continue
    fi
    if mkdir "$cg" 2>/dev/null && echo "$pid" > "$cg/cgroup.procs" 2>/dev/null; then
        CG_OF[$server]=$cg; CGROUPS+=("$cg")
    else
        rmdir "$cg" 2>/dev/null || true
    fi
done
TCK=$(getconf CLK_TCK)
cpu_us() { # SERVER
    local cg=${CG_OF[$1]:-}
    if [ -n "$cg" ] && [ -f "$cg/cpuacct.usage" ]; then
        echo $(( $(cat "$cg/cpuacct.usage") / 1000 ))
    elif [ -n "$cg" ] && [ -f "$cg/cpu.stat" ]; then
        awk '/^usage_usec/{print $2}' "$cg/cpu.stat"
    else
        awk -v t="$TCK" '{print int(($14+$15+$16+$17) * 1000000 / t)}' "/proc/${PID_OF[$1]}/stat"
    fi
}
rss_kib() { # resident set of a server and its live children
    local pid=$1 total=0 kids c v
    kids="$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)"
    for c in $pid $kids; do
        # A child that is exiting has no VmRSS line any more: count it as 0.
        v=$(awk '/^VmRSS/{print $2}' "/proc/$c/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# run SERVER PIN BLKSIZE WINDOW COUNT FILE: one measurement, appended to $RESULTS
run() {
    local server=$1 pin=$2 blk=$3 win=$4 count=$5 file=$6
    local pid=${PID_OF[$server]} port=${PORT_OF[$server]} cpu=1
    [ "$pin" = same ] && cpu=0
    local c0 c1 line rssmax=0 sampler
    c0=$(cpu_us "$server")
    rm -f "$WORK/rss"
    ( for _ in $(seq 1 13000); do rss_kib "$pid" >> "$WORK/rss"; sleep 0.05; done ) &
    sampler=$!
    if [ "$server" = raw-udp ]; then
        line=$(timeout 200 taskset -c $cpu "$RAW" fetch $PORT_RAW $((blk + 4)) "$win" \
            "$(stat -c %s "$ROOT/$file")" 2>>"$WORK/client.log" || true)
        line="ok=1 failed=0 $line min_s=nan median_s=nan max_s=nan"
    else
        line=$(timeout 650 taskset -c $cpu "$BIN/tftp-get" --server 127.0.0.1:$port --file "$file" \
            --blksize "$blk" --windowsize "$win" --count "$count" --time-limit 600 2>>"$WORK/client.log" || true)
    fi
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    c1=$(cpu_us "$server")
    rssmax=$(sort -n "$WORK/rss" 2>/dev/null | tail -1 || true)
    [ -n "$line" ] || line="ok=0 failed=$count bytes=0 wall_s=nan mb_s=0 min_s=nan median_s=nan max_s=nan"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$file" "$server" "$pin" "$blk" "$win" "$count" \
        "$(( (c1 - c0) ))" "${rssmax:-0}" "$line" >> "$RESULTS"
    echo "  $server pin=$pin blksize=$blk window=$win count=$count cpu_us=$(( c1 - c0 )) $line" >&2
}

# storm SERVER PLACEMENT: the lock-step boot storm, appended to $RESULTS
storm() {
    local server=$1 placement=$2 key=$1 cpu=() c0 c1 line
    [ "$placement" = shared ] && key="$server@shared"
    [ "$placement" = own ] && cpu=(--cpu 1)
    c0=$(cpu_us "$key")
    line=$(timeout 400 python3 "$HERE/benches/tftp-storm.py" --server "127.0.0.1:${PORT_OF[$key]}" \
        --file storm.bin --size "$(stat -c %s "$ROOT/storm.bin")" --count "$STORM_COUNT" \
        --blksize 1468 --max-time 300 "${cpu[@]}" 2>>"$WORK/client.log" || true)
    c1=$(cpu_us "$key")
    [ -n "$line" ] || line="ok=0 failed=$STORM_COUNT bytes=0 wall_s=nan mb_s=0 min_s=nan median_s=nan max_s=nan"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' storm "$server" "$placement" 1468 1 "$STORM_COUNT" \
        "$(( c1 - c0 ))" 0 "$line" >> "$RESULTS"
    echo "  storm $server placement=$placement count=$STORM_COUNT cpu_us=$(( c1 - c0 )) $line" >&2
}

if [ "$QUICK" = 1 ]; then
    BLKS=(1468 65464); WINS=(1 16); COUNTS=(1 16); PINS=(cross same)
else
    BLKS=(512 1468 8192 65464); WINS=(1 16 64); COUNTS=(1 16 64 256); PINS=(cross same)
fi

# The order of the servers alternates between repetitions, so none is always
# measured first (or last) after a change of configuration.
for rep in $(seq 1 "$REPS"); do
    echo "repetition $rep/$REPS" >&2
    order=(ours atftpd tftp-hpa raw-udp ours-nobatch)
    [ -n "$BEFORE" ] && order+=(before)
    [ $((rep % 2)) = 0 ] && order=($(printf '%s\n' "${order[@]}" | tac))
    storm_order=(${SERVERS_RUN[@]})
    [ $((rep % 2)) = 0 ] && storm_order=($(printf '%s\n' "${SERVERS_RUN[@]}" | tac))
    for placement in own shared; do
        for server in "${storm_order[@]}"; do
            storm "$server" "$placement"
        done
    done
    [ "$STORM_ONLY" = 1 ] && continue
    for pin in "${PINS[@]}"; do
        for blk in "${BLKS[@]}"; do
            for win in "${WINS[@]}"; do
                for server in "${order[@]}"; do
                    [ "$server" = tftp-hpa ] && [ "$win" != 1 ] && continue
                    [ "$server" = ours-nobatch ] && { [ "$win" = 1 ] || [ "$blk" = 65464 ]; } && continue
                    run "$server" "$pin" "$blk" "$win" 1 big.bin
                done
            done
        done
    done
    for count in "${COUNTS[@]}"; do
        for server in "${order[@]}"; do
            [ "$server" = raw-udp ] && continue
            [ "$server" = ours-nobatch ] && [ "$count" -lt 64 ] && continue
            run "$server" cross 1468 16 "$count" small.bin
        done
    done
done

echo "raw results: $RESULTS" >&2
python3 "$HERE/benches/tftp-peers-summary.py" "$RESULTS" "$BIG_MIB" "$REPS" "$STORM_COUNT" "$STORM_MIB"
