#!/usr/bin/env bash
# Boot storm: N workstations boot at once through the whole Preboot
# Services flow (steps 1–19 of DESIGN.md) against preboot-server, and, as
# the baseline in the same run, the DHCP and TFTP part alone against
# dnsmasq serving the same files.
#
#   sudo bash benches/boot-storm.sh                 # N = 100, 500, 1000
#   sudo NS="50" bash benches/boot-storm.sh         # what CI runs
#   sudo NS="1000" SERVERS="preboot" MODES=unicast bash benches/boot-storm.sh
#   sudo NS="50 100" SERVERS="preboot" MODES="unicast mtftp" bash benches/boot-storm.sh
#
# Rig: two network namespaces joined by a veth pair, 10.97.0.1/16 (server)
# and 10.97.0.2/16 (clients) plus one address per workstation from
# 10.97.1.1 upwards: private addresses that exist only inside these
# namespaces. Nothing is sent anywhere else.
#
# Files of real size, each under 65,535 × 512 bytes (so MTFTP can serve
# them later): a 1 MiB preboot file (bios/pxelinux.0), an imaging
# environment of an 8 MiB kernel and a 24 MiB initrd, random bytes.
#
# preboot: examples/preboot-server (release) in proxy mode on the standard
# ports (67, 4011, 69, 4012), TFTP max_transfers above N, the transaction
# server with a key made for the run and auto-enrolment, a server policy
# that never shows the menu and restores an image on every disk without
# one. The clients are ONE examples/preboot-client process
# (--workstations N): each workstation asks the proxy for boot
# information (DISCOVER, then REQUEST on 4011), fetches the preboot file,
# reads and writes its own disk-image file (image-safe data, key record),
# authenticates (protocol v2), sends its information, asks for the menu
# and its tasks, fetches the kernel and initrd, and reports its task done.
# dnsmasq: proxy DHCP (--dhcp-range=…,proxy, a pxe-service for BIOS) and
# its TFTP server (--tftp-max above N) on the same rig; the same client
# process does the DHCP/4011 exchange and fetches the same three files with
# the same TFTP options (blksize 1432, tsize), and stops
# (--baseline-files).
#
# MODES (default "unicast mtftp"; for preboot, dnsmasq is unicast only):
# in mode mtftp the same storm runs against preboot-server with `[mtftp]`
# enabled and the preboot file, kernel and initrd each in an
# `[[mtftp.file]]` (groups 239.255.97.1-3, client ports 3001-3003;
# `environment.fetch = "mtftp"`), so the workstations take all three by
# PXE MTFTP (issue 16): option 43 sub-options 1-5 for the preboot file,
# TaskReply TLV 6 for the environment, TFTP as the client's fallback.
# MTFTP_LISTEN (PXE_MTFTP_TMOUT, `mtftp.listen_secs`, default 4; why:
# docs/performance.md "Boot storm in MTFTP mode") is how long a
# workstation listens before it opens: long enough that the workstations
# of one storm reach each file within one listen time of the first (the
# spread of the DHCP exchange before the preboot file, of the session
# before the kernel, and the master's dally after a file, two timeouts
# = 2 s, before the next one), so that one stream serves
# them all. MTFTP_WINDOW (`mtftp.window`, default 16): blocks the server
# sends ahead of the master's ACK (every file here goes to preboot's own
# client, which keeps early blocks; 1 is PXE's lock-step).
# MTFTP_DELAY (PXE_MTFTP_DELAY, `mtftp.delay_secs`): the
# silence after which a listener re-opens (default 2).
#
# Reported per server, mode and N: time until all are done (p50, p99, max
# of the per-workstation totals, and the wall time), failures, the
# server's peak RSS (VmHWM) and CPU time (utime + stime), the bytes the
# server put on the wire (tx_bytes of its veth in /proc/net/dev of the
# server namespace, the delta around the client run: a multicast datagram
# counts once) and that as a multiple of the files' total size (one copy
# of the three files, 33 MiB); per file, how many workstations took it by
# MTFTP (as a listener: 0 opens; or as a master), by TFTP, or by TFTP
# after MTFTP fell back, their opens and masters (one master per stream:
# the rounds), and each workstation's file checked by sha256 against the
# served one (the client logs the sha256 of every file it fetched, at
# debug level); the client process's CPU time and the datagrams dropped
# for full receive buffers in its namespace (Udp RcvbufErrors: a starved
# workstation thread misses blocks); and the client's per-step table.
# Results: OUT (default
# target/boot-storm/<date>)/summary.txt.
#
# Needs root (namespaces). Installs dnsmasq-base if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="${NS:-100 500 1000}"
SERVERS="${SERVERS:-preboot dnsmasq}"
MODES="${MODES:-unicast mtftp}"
MTFTP_LISTEN="${MTFTP_LISTEN:-4}"
MTFTP_DELAY="${MTFTP_DELAY:-2}"
MTFTP_WINDOW="${MTFTP_WINDOW:-16}"
LIMIT="${LIMIT:-600}"
OUT="${OUT:-target/boot-storm/$(date +%Y%m%d-%H%M%S)}"

die() { echo "boot-storm: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
if ! command -v dnsmasq >/dev/null && [[ " $SERVERS " == *" dnsmasq "* ]]; then
  apt-get install -y -q dnsmasq-base >/dev/null || die "cannot install dnsmasq-base"
fi

cargo build --release --quiet --example preboot-server --example preboot-client
SERVER_BIN="$PWD/target/release/examples/preboot-server"
CLIENT_BIN="$PWD/target/release/examples/preboot-client"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d /tmp/boot-storm.XXXXXX)"
chmod 755 "$WORK"
TAG="bs$$"
SRV="$TAG-srv"
CLI="$TAG-cli"
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
  done
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- rig ---------------------------------------------------------------------
ip netns add "$SRV"
ip netns add "$CLI"
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip link add "s-$TAG" netns "$SRV" type veth peer name "c-$TAG" netns "$CLI"
ip -n "$SRV" addr add 10.97.0.1/16 dev "s-$TAG"
ip -n "$CLI" addr add 10.97.0.2/16 dev "c-$TAG"
ip -n "$SRV" link set "s-$TAG" up
ip -n "$CLI" link set "c-$TAG" up
MAXN=0
for n in $NS; do [ "$n" -gt "$MAXN" ] && MAXN=$n; done
# One address per workstation: 10.97.1.1 + i.
python3 - "$MAXN" "c-$TAG" >"$WORK/addrs.batch" <<'EOF'
import ipaddress, sys
n, dev = int(sys.argv[1]), sys.argv[2]
base = int(ipaddress.IPv4Address("10.97.1.1"))
for i in range(n):
    print(f"addr add {ipaddress.IPv4Address(base + i)}/16 dev {dev}")
EOF
ip -n "$CLI" -batch "$WORK/addrs.batch"

# ---- files -------------------------------------------------------------------
ROOT="$WORK/tftp"
mkdir -p "$ROOT/bios" "$ROOT/imaging"
head -c $((1 << 20)) /dev/urandom >"$ROOT/bios/pxelinux.0"
head -c $((8 << 20)) /dev/urandom >"$ROOT/imaging/linux"
head -c $((24 << 20)) /dev/urandom >"$ROOT/imaging/initrd"
chmod -R a+rX "$ROOT"
KEY_PRIV="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
FILES=(bios/pxelinux.0 imaging/linux imaging/initrd)
(cd "$ROOT" && sha256sum "${FILES[@]}") >"$WORK/files.sha256"
FILES_BYTES=0
for f in "${FILES[@]}"; do FILES_BYTES=$((FILES_BYTES + $(stat -c %s "$ROOT/$f"))); done

# ---- servers -----------------------------------------------------------------
SPID=""
start_preboot() { # n mode
  local n="$1" mode="$2" state="$WORK/state-$1-$2" fetch=tftp
  [ "$mode" = mtftp ] && fetch=mtftp
  mkdir -p "$state"
  chmod 777 "$state"
  cat >"$WORK/preboot-$n-$mode.toml" <<EOF
[server]
mode = "proxy"
server_ip = "10.97.0.1"
interface = "s-$TAG"
state_dir = "$state"

[boot]
bios = "bios/pxelinux.0"

[tftp]
root = "$ROOT"
max_transfers = $((4 * n + 64))
max_per_client = 8

[transaction]

[transaction.keys]
server_private = "$KEY_PRIV"
auto_enrol = true

[transaction.store.server]
image_server = "10.97.0.1"
menu = { mode = "never" }
environment = { fetch = "$fetch", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "" }

[[transaction.store.server.rule]]
name = "no image yet"
image = "images/standard.img"
when = { base_image = "" }
EOF
  if [ "$mode" = mtftp ]; then
    cat >>"$WORK/preboot-$n-$mode.toml" <<EOF

[mtftp]
listen_secs = $MTFTP_LISTEN
delay_secs = $MTFTP_DELAY
window = $MTFTP_WINDOW

[[mtftp.file]]
file = "bios/pxelinux.0"
group = "239.255.97.1"
client_port = 3001

[[mtftp.file]]
file = "imaging/linux"
group = "239.255.97.2"
client_port = 3002

[[mtftp.file]]
file = "imaging/initrd"
group = "239.255.97.3"
client_port = 3003
EOF
  fi
  ip netns exec "$SRV" "$SERVER_BIN" --config "$WORK/preboot-$n-$mode.toml" --log-level warn \
    >"$OUT/preboot-$n-$mode.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
}

start_dnsmasq() { # n
  local n="$1"
  ip netns exec "$SRV" dnsmasq -k --conf-file=/dev/null --port=0 \
    --interface="s-$TAG" --bind-interfaces \
    --dhcp-range=10.97.0.0,proxy,255.255.0.0 \
    --pxe-service=x86PC,"boot storm",bios/pxelinux \
    --enable-tftp --tftp-root="$ROOT" --tftp-max=$((4 * n + 64)) \
    --pid-file="$WORK/dnsmasq.pid" --log-facility="$OUT/dnsmasq-$n.log" &
  SPID=$!
  PIDS+=("$SPID")
}

# Bytes the server's veth transmitted (its namespace's /proc/net/dev).
tx_bytes() {
  ip netns exec "$SRV" cat /proc/net/dev \
    | awk -v d="s-$TAG" '{ sub(/^ +/, ""); split($0, a, ":"); if (a[1] == d) { split(a[2], f, " "); print f[9] } }'
}

# Datagrams the kernel dropped for a full socket receive buffer in the
# clients' namespace (Udp RcvbufErrors in its /proc/net/snmp): a starved
# workstation thread misses blocks this way.
rcvbuf_errors() {
  ip netns exec "$CLI" cat /proc/net/snmp \
    | awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }'
}

# CPU seconds (user + system) of the children this shell waited for, from
# the builtin `times` written to FILE by the caller itself (in a subshell
# it would count the subshell's children): around the client run, the
# client process's CPU.
children_cpu() { # file written by `times`
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"
}

# Per file: the ways the workstations took it (the client's debug lines
# `fetched NAME by … · B bytes · sha256 H`), the opens and masters, and
# the sha256 check against the served files. Exit 1 on a wrong sha256 or
# a workstation done without a line for each file.
file_report() { # client.err label n done
  python3 - "$@" "$WORK/files.sha256" <<'PY'
import re, sys
err, label, n, done, sums = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4] or 0), sys.argv[5]
want = {}
for line in open(sums):
    h, name = line.split()
    want[name] = h
rx = re.compile(r"fetched (\S+) by (MTFTP \((\d+) opens, (master|listener)\)|TFTP \(MTFTP fell back: [^)]*\)|TFTP) · (\d+) bytes · sha256 ([0-9a-f]{64})")
stats = {f: dict(mtftp=0, listener=0, master=0, opens=0, max_opens=0, fallback=0, tftp=0, ok=0, bad=0) for f in want}
for line in open(err, errors="replace"):
    m = rx.search(line)
    if not m or m.group(1) not in stats:
        continue
    s = stats[m.group(1)]
    way = m.group(2)
    if way.startswith("MTFTP"):
        s["mtftp"] += 1
        o = int(m.group(3))
        s["opens"] += o
        s["max_opens"] = max(s["max_opens"], o)
        s["master" if m.group(4) == "master" else "listener"] += 1
    elif "fell back" in way:
        s["fallback"] += 1
    else:
        s["tftp"] += 1
    s["ok" if m.group(6) == want[m.group(1)] else "bad"] += 1
bad = 0
for f, s in stats.items():
    print(f"  {label:<14} {n:>5} {f:<17} {s['mtftp']:>6} {s['listener']:>8} {s['master']:>7} "
          f"{s['opens']:>6} {s['max_opens']:>9} {s['fallback']:>9} {s['tftp']:>5} {s['ok']:>7} {s['bad']:>7}")
    bad += s["bad"] + max(0, done - s["ok"])
sys.exit(1 if bad else 0)
PY
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

stop_server() {
  kill "$SPID" 2>/dev/null || true
  timeout 10 tail --pid="$SPID" -f /dev/null 2>/dev/null || kill -9 "$SPID" 2>/dev/null || true
}

wait_ready() { # port: wait until something listens on udp PORT in the server namespace
  for _ in $(seq 1 100); do
    if ip netns exec "$SRV" ss -lun | awk '{ print $4 }' | grep -q ":$1\$"; then return 0; fi
    sleep 0.1
  done
  die "server did not start (udp $1); see $OUT"
}

TCK="$(getconf CLK_TCK)"
FAILED=0
FILE_LINES="$WORK/files.txt"
printf '  %-14s %5s %-17s %6s %8s %7s %6s %9s %9s %5s %7s %7s\n' row N file mtftp listener masters opens max_opens fell_back tftp sha_ok sha_bad \
  >"$FILE_LINES"
printf '%-14s %6s %6s %7s %9s %9s %9s %9s %10s %9s %10s %8s %9s %9s\n' server N done failed wall_s p50_s p99_s max_s rss_MiB cpu_s tx_MB x_files cli_drops cli_cpu_s \
  | tee "$OUT/summary.txt"

for n in $NS; do
  for s in $SERVERS; do
    modes="unicast"
    [ "$s" = preboot ] && modes="$MODES"
    for mode in $modes; do
      case "$mode" in unicast | mtftp) ;; *) die "unknown mode $mode" ;; esac
      label="$s"
      [ "$mode" = mtftp ] && label="$s-mtftp"
      disks="$WORK/disks-$label-$n"
      mkdir -p "$disks"
      case "$s" in
        preboot) start_preboot "$n" "$mode"; wait_ready 4012; extra=(--server-key "@$WORK/pub.key") ;;
        dnsmasq) start_dnsmasq "$n"; wait_ready 69; extra=(--baseline-files imaging/linux,imaging/initrd) ;;
        *) die "unknown server $s" ;;
      esac
      if [ "$s" = preboot ]; then
        # The public key the server printed (the client pins it).
        log="$OUT/preboot-$n-$mode.log"
        for _ in $(seq 1 50); do
          grep -q 'server key:' "$log" 2>/dev/null && break
          sleep 0.1
        done
        grep -o 'server key: *[0-9a-f]\{64\}' "$log" | awk '{ print $3 }' >"$WORK/pub.key"
        [ -s "$WORK/pub.key" ] || die "no server key in $log"
      fi
      c0="$(cpu_ticks "$SPID")"
      t0="$(tx_bytes)"
      d0="$(rcvbuf_errors)"
      times >"$WORK/times0"
      set +e
      # Warnings, and the client's own debug lines (not the library's):
      # one per file fetched, for file_report.
      RUST_LOG="warn,preboot_client=debug" \
        timeout "$LIMIT" ip netns exec "$CLI" "$CLIENT_BIN" --server 10.97.0.1 \
        --workstations "$n" --address-base 10.97.1.1 --mac 52:54:00:97:00:00 \
        --disk "$disks" --step-limit 300 "${extra[@]}" \
        >"$OUT/client-$label-$n.txt" 2>"$OUT/client-$label-$n.err"
      rc=$?
      set -e
      times >"$WORK/times1"
      t1="$(tx_bytes)"
      d1="$(rcvbuf_errors)"
      c1="$(cpu_ticks "$SPID")"
      rss="$(peak_rss_kib "$SPID")"
      stop_server
      r="$(grep '^RESULT' "$OUT/client-$label-$n.txt" || echo "RESULT failed rc=$rc")"
      val() { echo "$r" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
      printf '%-14s %6s %6s %7s %9.2f %9.2f %9.2f %9.2f %10.1f %9.2f %10.1f %8.2f %9s %9.2f\n' "$label" "$n" \
        "$(val done)" "$(val failed)" \
        "$(echo "$(val wall_ms) / 1000" | bc -l)" \
        "$(echo "$(val total_p50_ms) / 1000" | bc -l)" \
        "$(echo "$(val total_p99_ms) / 1000" | bc -l)" \
        "$(echo "$(val total_max_ms) / 1000" | bc -l)" \
        "$(echo "$rss / 1024" | bc -l)" \
        "$(echo "($c1 - $c0) / $TCK" | bc -l)" \
        "$(echo "($t1 - $t0) / 1000000" | bc -l)" \
        "$(echo "($t1 - $t0) / $FILES_BYTES" | bc -l)" "$((d1 - d0))" \
        "$(echo "$(children_cpu "$WORK/times1") - $(children_cpu "$WORK/times0")" | bc -l)" | tee -a "$OUT/summary.txt"
      file_report "$OUT/client-$label-$n.err" "$label" "$n" "$(val done)" >>"$FILE_LINES" || FAILED=1
      rm -rf "$disks"
      [ "$(val failed)" = 0 ] || FAILED=1
    done
  done
done
echo "per file (workstations; opens summed; masters: one per stream, the rounds; sha256 against the served file):" \
  | tee -a "$OUT/summary.txt"
tee -a "$OUT/summary.txt" <"$FILE_LINES"
echo "per-step tables: $OUT/client-*.txt" | tee -a "$OUT/summary.txt"
# Exit 1 when a workstation failed, or a file of a workstation that was
# done is missing or has the wrong sha256 (CI runs this with N = 50).
exit "$FAILED"
