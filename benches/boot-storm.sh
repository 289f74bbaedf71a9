#!/usr/bin/env bash
# Boot storm: N workstations boot at once through the whole Preboot
# Services flow (steps 1–19 of DESIGN.md) against preboot-server, and, as
# the baseline in the same run, the DHCP and TFTP part alone against
# dnsmasq serving the same files.
#
#   sudo bash benches/boot-storm.sh                 # N = 100, 500, 1000
#   sudo NS="50" bash benches/boot-storm.sh         # what CI runs
#   sudo NS="1000" SERVERS="preboot" bash benches/boot-storm.sh
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
# Reported per server and N: time until all are done (p50, p99, max of the
# per-workstation totals, and the wall time), failures, the server's peak
# RSS (VmHWM) and CPU time (utime + stime), and the client's per-step
# table. Results: OUT (default target/boot-storm/<date>)/summary.txt.
#
# Needs root (namespaces). Installs dnsmasq-base if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

NS="${NS:-100 500 1000}"
SERVERS="${SERVERS:-preboot dnsmasq}"
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

# ---- servers -----------------------------------------------------------------
SPID=""
start_preboot() { # n
  local n="$1" state="$WORK/state-$1"
  mkdir -p "$state"
  chmod 777 "$state"
  cat >"$WORK/preboot-$n.toml" <<EOF
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
environment = { fetch = "tftp", kernel = "imaging/linux", initrd = "imaging/initrd", loader = "" }

[[transaction.store.server.rule]]
name = "no image yet"
image = "images/standard.img"
when = { base_image = "" }
EOF
  ip netns exec "$SRV" "$SERVER_BIN" --config "$WORK/preboot-$n.toml" --log-level warn \
    >"$OUT/preboot-$n.log" 2>&1 &
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
printf '%-8s %6s %6s %7s %9s %9s %9s %9s %10s %9s\n' server N done failed wall_s p50_s p99_s max_s rss_MiB cpu_s \
  | tee "$OUT/summary.txt"

for n in $NS; do
  for s in $SERVERS; do
    disks="$WORK/disks-$s-$n"
    mkdir -p "$disks"
    case "$s" in
      preboot) start_preboot "$n"; wait_ready 4012; extra=(--server-key "@$WORK/pub.key") ;;
      dnsmasq) start_dnsmasq "$n"; wait_ready 69; extra=(--baseline-files imaging/linux,imaging/initrd) ;;
      *) die "unknown server $s" ;;
    esac
    if [ "$s" = preboot ]; then
      # The public key the server printed (the client pins it).
      for _ in $(seq 1 50); do
        grep -q 'server key:' "$OUT/preboot-$n.log" 2>/dev/null && break
        sleep 0.1
      done
      grep -o 'server key: *[0-9a-f]\{64\}' "$OUT/preboot-$n.log" | awk '{ print $3 }' >"$WORK/pub.key"
      [ -s "$WORK/pub.key" ] || die "no server key in $OUT/preboot-$n.log"
    fi
    c0="$(cpu_ticks "$SPID")"
    set +e
    timeout "$LIMIT" ip netns exec "$CLI" "$CLIENT_BIN" --server 10.97.0.1 \
      --workstations "$n" --address-base 10.97.1.1 --mac 52:54:00:97:00:00 \
      --disk "$disks" --step-limit 300 --log-level warn "${extra[@]}" \
      >"$OUT/client-$s-$n.txt" 2>"$OUT/client-$s-$n.err"
    rc=$?
    set -e
    c1="$(cpu_ticks "$SPID")"
    rss="$(peak_rss_kib "$SPID")"
    stop_server
    r="$(grep '^RESULT' "$OUT/client-$s-$n.txt" || echo "RESULT failed rc=$rc")"
    val() { echo "$r" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
    printf '%-8s %6s %6s %7s %9.2f %9.2f %9.2f %9.2f %10.1f %9.2f\n' "$s" "$n" \
      "$(val done)" "$(val failed)" \
      "$(echo "$(val wall_ms) / 1000" | bc -l)" \
      "$(echo "$(val total_p50_ms) / 1000" | bc -l)" \
      "$(echo "$(val total_p99_ms) / 1000" | bc -l)" \
      "$(echo "$(val total_max_ms) / 1000" | bc -l)" \
      "$(echo "$rss / 1024" | bc -l)" \
      "$(echo "($c1 - $c0) / $TCK" | bc -l)" | tee -a "$OUT/summary.txt"
    rm -rf "$disks"
    [ "$(val failed)" = 0 ] || FAILED=1
  done
done
echo "per-step tables: $OUT/client-*.txt" | tee -a "$OUT/summary.txt"
# Exit 1 when a workstation failed (CI runs this with N = 50).
exit "$FAILED"
