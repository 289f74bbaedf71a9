#!/usr/bin/env bash
# PXE MTFTP against unicast TFTP, one file to N clients at once (issue 16,
# "Performance"), in two network namespaces this script creates (server
# and clients, joined by one veth pair; the client side is a bridge with
# one more namespace per atftp client; multicast never leaves them).
#
#   sudo bash benches/mtftp-peers.sh [--clients "1 8 32 128"] [--mib 16]
#        [--windows "1 16"] [--late SECS] [--out DIR]
#
# For each N, side by side in the same run, N clients fetch one file of
# --mib MiB (512-byte blocks: at most 65,535 blocks, so < 32 MiB):
#   ours-mtftp-wW  the boot server (examples/preboot-server) with [mtftp]
#                  (SPORT 1759, group 239.77.2.1:3001) and window = W, for
#                  each W of --windows (1: PXE 2.1's lock-step; the server
#                  is restarted for each); N processes of
#                  `examples/tftp-get --mtftp` (preboot::driver::mtftp::fetch),
#                  each from its own address, --listen 1 --delay 2, started
#                  together (one round: all within the listen time);
#   ours-mtftp-late  with --late SECS: the same with the largest window,
#                  but every second client starts SECS later (mid-stream:
#                  it keeps what it hears and re-opens for the head);
#   ours-tftp      the same server's TFTP (port 69), `tftp-get --count N`
#                  (N concurrent transfers from one event loop), no options
#                  (512-byte blocks, lock-step) and, as iPXE asks,
#                  blksize 1432 lock-step (ours-tftp-1432);
#   atftpd-mtftp   atftpd --mtftp (Debian atftpd 0.8, group 239.77.2.2:3002,
#                  port 1758) with N `atftp --mget` processes, each in a
#                  namespace of its own on the client side's bridge (atftp
#                  binds the MTFTP client port without SO_REUSEADDR: two
#                  in one namespace fail with "bind: Address already in
#                  use").
# Per run: wall time from the start of the first client until the last
# had the whole file (wall_s) and until the last client process ended
# (exit_s: an MTFTP master dallies after its last ACK), clients that got the whole file (size checked; sha256 for the
# MTFTP runs), bytes the server's veth transmitted (/proc/net/dev in the
# server namespace, delta around the run: everything the server put on the
# wire, multicast counted once) as a multiple of the file, and the server's
# CPU time (utime+stime from /proc/PID/stat, delta), and for our MTFTP
# rows the rounds: streams the server started (its "mtftp: stream
# started" log lines) and the clients' opens summed (tftp-get's "MTFTP
# done: K open(s)"). Prints a table and the ratios of each run against
# ours-tftp (512) of the same N.
#
# Needs root, ip, bc, atftp and atftpd (the atftpd rows are skipped without
# them). Every client is bounded by `timeout`; only processes this script
# started are stopped, by PID.
set -euo pipefail

CLIENTS="1 8 32 128"
MIB=16
WINDOWS="1 16"
LATE=""
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) CLIENTS="$2"; shift ;;
    --mib) MIB="$2"; shift ;;
    --windows) WINDOWS="$2"; shift ;;
    --late) LATE="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--clients \"1 8 32 128\"] [--mib N] [--windows \"1 16\"] [--late SECS] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
[ "$MIB" -ge 1 ] && [ "$MIB" -le 31 ] || { echo "--mib 1..31 (65,535 blocks of 512 bytes)" >&2; exit 2; }
MAXN=0
for n in $CLIENTS; do
  [ "$n" -ge 1 ] && [ "$n" -le 128 ] || { echo "--clients: 1..128 each" >&2; exit 2; }
  [ "$n" -gt "$MAXN" ] && MAXN=$n
done
MAXW=1
for w in $WINDOWS; do
  [ "$w" -ge 1 ] && [ "$w" -le 64 ] || { echo "--windows: 1..64 each ([mtftp] window)" >&2; exit 2; }
  [ "$w" -gt "$MAXW" ] && MAXW=$w
done
[ -z "$LATE" ] || [ "$LATE" -ge 1 ] || { echo "--late: whole seconds >= 1" >&2; exit 2; }

cd "$(dirname "$0")/.."
cargo build --release --quiet --example preboot-server --example tftp-get
TD="${CARGO_TARGET_DIR:-$PWD/target}"
SERVER_BIN="$TD/release/examples/preboot-server"
GET_BIN="$TD/release/examples/tftp-get"

WORK="$(mktemp -d /tmp/mtftp-peers.XXXXXX)"
chmod 755 "$WORK"
OUT="${OUT:-$WORK/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TAG="mp$$"
SRV="$TAG-srv"
CLI="$TAG-cli"
PIDS=()
ACLI=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
  done
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  for a in "${ACLI[@]}"; do ip netns del "$a" 2>/dev/null || true; done
  case "$OUT" in "$WORK"/*) cp -r "$OUT" "/tmp/$TAG-out" 2>/dev/null || true ;; esac
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- rig: 10.77.0.1 server, 10.77.0.2 + 10.77.1.(1..N) clients ---------------
ip netns add "$SRV"
ip netns add "$CLI"
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip link add "s-$TAG" netns "$SRV" type veth peer name "c-$TAG" netns "$CLI"
ip -n "$SRV" addr add 10.77.0.1/16 dev "s-$TAG"
# The client side is a bridge (br0 in the client namespace) so that each
# atftp client can have a namespace of its own (atftp binds the MTFTP
# client port without SO_REUSEADDR: one per namespace).
ip -n "$CLI" link add br0 type bridge mcast_snooping 0
ip -n "$CLI" link set "c-$TAG" master br0
ip -n "$CLI" addr add 10.77.0.2/16 dev br0
for i in $(seq 1 "$MAXN"); do ip -n "$CLI" addr add "10.77.1.$i/16" dev br0; done
ip -n "$SRV" link set "s-$TAG" up
ip -n "$CLI" link set "c-$TAG" up
ip -n "$CLI" link set br0 up
ip -n "$SRV" route add 224.0.0.0/4 dev "s-$TAG"
ip -n "$CLI" route add 224.0.0.0/4 dev br0
ACLI=()
if command -v atftp >/dev/null; then
  for i in $(seq 1 "$MAXN"); do
    ip netns add "$TAG-a$i"
    ACLI[i]="$TAG-a$i"
    ip -n "$TAG-a$i" link set lo up
    ip link add "a$i-$TAG" netns "$CLI" type veth peer name eth0 netns "$TAG-a$i"
    ip -n "$CLI" link set "a$i-$TAG" master br0
    ip -n "$TAG-a$i" addr add "10.77.2.$i/16" dev eth0
    ip -n "$TAG-a$i" link set eth0 up
    ip -n "$TAG-a$i" route add 224.0.0.0/4 dev eth0
  done
fi

# The atftp clients' bridge ports are up only for the atftpd rows, and
# only as many as that row has clients: the bridge floods each multicast
# datagram to every port that is up, and idle ports would cost the other
# rows a copy each.
atftp_ports() { # up|down n
  local i
  for i in $(seq 1 "$MAXN"); do
    [ -n "${ACLI[i]:-}" ] || continue
    if [ "$1" = up ] && [ "$i" -le "$2" ]; then
      ip -n "$CLI" link set "a$i-$TAG" up
    else
      ip -n "$CLI" link set "a$i-$TAG" down
    fi
  done
}

ROOT="$WORK/tftp"
mkdir -p "$ROOT"
head -c $((MIB << 20)) /dev/urandom >"$ROOT/big.bin"
chmod -R a+rX "$ROOT"
SIZE=$((MIB << 20))
WANT_SHA="$(sha256sum <"$ROOT/big.bin" | cut -d' ' -f1)"

cat >"$WORK/preboot.toml" <<CONF
[server]
mode = "proxy"
server_ip = "10.77.0.1"
interface = "s-$TAG"
state_dir = "$WORK"

[boot]
bios = "big.bin"

[tftp]
root = "$ROOT"
max_transfers = 256
max_per_client = 256

[mtftp]
enabled = true
server_port = 1759
listen_secs = 1
delay_secs = 2
window = @WINDOW@

[[mtftp.file]]
file = "big.bin"
group = "239.77.2.1"
client_port = 3001
CONF

tx_bytes() { ip netns exec "$SRV" awk -v d="s-$TAG:" '$1 == d { print $10 }' /proc/net/dev; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK="$(getconf CLK_TCK)"
now() { date +%s.%N; }
wait_port() { # port
  for _ in $(seq 100); do
    if ip netns exec "$SRV" ss -Hlun | awk '{ print $4 }' | grep -q ":$1\$"; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on udp $1" >&2
  return 1
}

# Our server with [mtftp] window = $1, restarted for each window (the
# previous one stopped by its PID). Its log keeps the MTFTP stream lines.
OURS=""
start_ours() {
  if [ -n "$OURS" ]; then
    kill "$OURS" 2>/dev/null || true
    timeout 10 tail --pid="$OURS" -f /dev/null 2>/dev/null || kill -9 "$OURS" 2>/dev/null || true
  fi
  sed "s/@WINDOW@/$1/" "$WORK/preboot.toml" >"$WORK/preboot-w$1.toml"
  ip netns exec "$SRV" env RUST_LOG="warn,preboot::driver::mtftp_server=info" \
    "$SERVER_BIN" --config "$WORK/preboot-w$1.toml" >>"$OUT/preboot-server.log" 2>&1 &
  OURS=$!
  PIDS+=("$OURS")
  wait_port 69
  wait_port 1759
}
streams_started() { grep -c "mtftp: stream started" "$OUT/preboot-server.log" || true; }

ATFTPD=""
if command -v atftpd >/dev/null && command -v atftp >/dev/null; then
  echo "big.bin 239.77.2.2 3002" >"$WORK/atftpd-mtftp.conf"
  ip netns exec "$SRV" atftpd --daemon --no-fork --user root --group root \
    --bind-address 10.77.0.1 --port 6969 --mtftp "$WORK/atftpd-mtftp.conf" \
    --mtftp-port 1758 --logfile /dev/null "$ROOT" &
  ATFTPD=$!
  PIDS+=("$ATFTPD")
  wait_port 6969 || ATFTPD=""
else
  echo "note: atftp/atftpd not installed: no atftpd rows" >&2
fi

RESULTS="$OUT/results.tsv"
printf 'way\tN\tok\twall_s\texit_s\tserver_bytes\tx_file\tserver_cpu_s\tstreams\topens\n' >"$RESULTS"

# One client of an MTFTP way, in the client namespace: way i n.
client() {
  local way="$1" i="$2" n="$3" out="$WORK/got-$1-$3-$2"
  case "$way" in
    ours-mtftp*)
      ip netns exec "$CLI" timeout 120 "$GET_BIN" --server 10.77.0.1:1759 --file big.bin \
        --mtftp 239.77.2.1:3001 --mtftp-local "10.77.1.$i" --listen 1 --delay 2 --out "$out" ;;
    atftpd-mtftp)
      ip netns exec "${ACLI[i]}" timeout 120 atftp --mtftp "client-port 3002" --mtftp "mcast-ip 239.77.2.2" \
        --mtftp "listen-delay 1" --mtftp "timeout-delay 2" --mget -r big.bin -l "$out" 10.77.0.1 1758 ;;
  esac
}
# One run: way n server_pid. wall_s: from the first client's start until
# the last client had the whole file (for tftp-get: its start plus the
# time it reports to the last block, which leaves out the master's dally
# after its last ACK; for atftp: its exit); exit_s: until the last client
# process exited.
run() {
  local way="$1" n="$2" spid="$3" late="${4:-}" t0 t1 b0 b1 c0 c1 ok=0 i pids=() starts=() f done_s wall
  local s0 streams=- opens=-
  rm -f "$WORK"/got-* 2>/dev/null || true
  sleep 1
  s0=$(streams_started)
  b0=$(tx_bytes); c0=$(cpu_ticks "$spid"); t0=$(now)
  case "$way" in
    ours-tftp|ours-tftp-1432)
      local bs=() out bytes
      [ "$way" = ours-tftp-1432 ] && bs=(--blksize 1432)
      out=$(ip netns exec "$CLI" timeout 300 "$GET_BIN" --server 10.77.0.1:69 --file big.bin \
          --count "$n" "${bs[@]}" 2>&1) || true
      echo "$way N=$n: $out" >>"$OUT/clients.log"
      ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
      bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$out" | tail -1)
      [ "${bytes:-0}" -eq $((n * SIZE)) ] || ok="${ok:-0}(bytes ${bytes:-?})"
      t1=$(now)
      wall=$(echo "$t1 - $t0" | bc -l)
      ;;
    *)
      for i in $(seq 1 "$n"); do
        if [ -n "$late" ] && [ $((i % 2)) = 0 ]; then
          # Every second client joins $late s later, mid-stream.
          (sleep "$late"; client "$way" "$i" "$n") >"$WORK/log-$way-$n-$i" 2>&1 &
          starts[i]=$(echo "$(now) + $late" | bc -l)
        else
          client "$way" "$i" "$n" >"$WORK/log-$way-$n-$i" 2>&1 &
          starts[i]=$(now)
        fi
        pids[i]=$!
      done
      done_s=0
      for i in $(seq 1 "$n"); do
        wait "${pids[i]}" || true
        local end; end=$(now)
        local took; took=$(sed -n 's/.*max_s=\([0-9.]*\).*/\1/p' "$WORK/log-$way-$n-$i" | tail -1)
        if [ -n "$took" ]; then end=$(echo "${starts[i]} + $took" | bc -l); fi
        done_s=$(echo "if ($end - $t0 > $done_s) $end - $t0 else $done_s" | bc -l)
        { echo "--- client $i"; cat "$WORK/log-$way-$n-$i"; } >>"$OUT/clients-$way-$n.log"
      done
      for i in $(seq 1 "$n"); do
        f="$WORK/got-$way-$n-$i"
        [ -f "$f" ] && [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$WANT_SHA" ] && ok=$((ok + 1))
      done
      t1=$(now)
      wall=$done_s
      if [ "${way#ours-mtftp}" != "$way" ]; then
        sleep 0.2
        streams=$(( $(streams_started) - s0 ))
        opens=$(sed -n 's/.*MTFTP done: \([0-9]*\) open.*/\1/p' "$OUT/clients-$way-$n.log" | awk '{ s += $1 } END { print s + 0 }')
      fi
      ;;
  esac
  b1=$(tx_bytes); c1=$(cpu_ticks "$spid")
  printf '%s\t%s\t%s\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%s\t%s\n' "$way" "$n" "${ok:-0}/$n" "$wall" "$(echo "$t1 - $t0" | bc -l)" \
    "$((b1 - b0))" "$(echo "($b1 - $b0) / $SIZE" | bc -l)" "$(echo "($c1 - $c0) / $TCK" | bc -l)" "$streams" "$opens" \
    | tee -a "$RESULTS"
}

echo "file $MIB MiB ($SIZE bytes), clients: $CLIENTS; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/summary.txt"
for n in $CLIENTS; do
  for w in $WINDOWS; do
    start_ours "$w"
    run "ours-mtftp-w$w" "$n" "$OURS"
  done
  if [ -n "$LATE" ]; then
    [ "$w" = "$MAXW" ] || start_ours "$MAXW"
    run ours-mtftp-late "$n" "$OURS" "$LATE"
  fi
  run ours-tftp "$n" "$OURS"
  run ours-tftp-1432 "$n" "$OURS"
  if [ -n "$ATFTPD" ]; then
    atftp_ports up "$n"
    run atftpd-mtftp "$n" "$ATFTPD"
    atftp_ports down "$n"
  fi
done

echo
awk -F'\t' '
  NR == 1 { next }
  { key = $2; rows[NR] = $0; if ($1 == "ours-tftp") { base_w[key] = $4; base_b[key] = $6; base_c[key] = $8 } }
  END {
    printf "%-16s %4s %7s %7s %7s %12s %7s %7s %7s %5s %9s %10s %8s\n", "way", "N", "ok", "wall_s", "exit_s", "server_bytes", "x_file", "cpu_s", "streams", "opens", "wall/tftp", "bytes/tftp", "cpu/tftp"
    for (i = 2; i <= NR; i++) {
      split(rows[i], f, "\t"); k = f[2]
      printf "%-16s %4s %7s %7s %7s %12s %7s %7s %7s %5s %9.2f %10.3f %8.2f\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], \
        (base_w[k] > 0 ? f[4] / base_w[k] : 0), (base_b[k] > 0 ? f[6] / base_b[k] : 0), (base_c[k] > 0 ? f[8] / base_c[k] : 0)
    }
  }' "$RESULTS" | tee -a "$OUT/summary.txt"
echo "results: $OUT"
