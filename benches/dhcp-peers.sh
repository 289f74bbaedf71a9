#!/usr/bin/env bash
# DHCP server throughput and CPU per DORA: preboot's full mode beside
# kea-dhcp4 (memfile) and dnsmasq, all driven by perfdhcp in the same run,
# plus preboot's proxy mode answering PXE DISCOVERs with proxy OFFERs.
#
#   sudo bash benches/dhcp-peers.sh            # the full run (~15 min)
#   sudo QUICK=1 bash benches/dhcp-peers.sh    # a few short steps (~3 min)
#   sudo BEFORE=/path/to/old/preboot-dhcpd bash benches/dhcp-peers.sh
#
# BEFORE: a second build of examples/preboot-dhcpd (e.g. main's, before a
# change) runs beside this tree's, full mode as "old" and proxy mode as
# "proxyold", interleaved step by step with "preboot" and "proxy" so that
# both see the same noise; the summary adds CPU per DORA after / before at
# the rates both passed.
#
# Rig: one client namespace running perfdhcp and one namespace per server,
# joined by veth pairs (private 10.x /16 addresses that exist only inside
# these namespaces; nothing is sent anywhere else). perfdhcp acts as a relay
# (giaddr = its veth address), so each server answers by unicast to it.
# Every request carries the PXE options a BIOS PXE ROM sends: 60
# "PXEClient:Arch:00000:UNDI:002001", 93 (arch 0), 94 (UNDI 2.1), 97 (UUID).
# 100,000 distinct clients (-R 100000); each DHCP subnet is a /15 so that
# every client can hold its own lease.
#
# For each rate step (-r) every server runs for PERIOD seconds, servers
# interleaved step by step so that they share the machine's noise. A step
# passes when fewer than 1 % of the DORAs fail (ACKs received / DISCOVERs
# sent); a failing step is run once more before the server's ladder stops.
# Each step also records the UDP receive-buffer drops on the server's and on
# perfdhcp's side (/proc/net/snmp RcvbufErrors in each namespace), which
# tells a server that cannot keep up from a starved perfdhcp.
# Server CPU per DORA: the CPU time of all the server's threads during the
# step divided by the ACKs received, both as the scheduler's exact run time
# (/proc/PID/task/*/schedstat, ns) and as utime + stime (/proc/PID/stat,
# clock ticks). Servers run pinned to CPU 0 and perfdhcp to CPU 1 (PIN=0
# turns that off). ROUNDS=n repeats the whole ladder n times.
#
# Servers: preboot (examples/preboot-dhcpd.rs, full mode, lease file fsync'd
# before every ACK by group commit); kea-dhcp4 (memfile, persist=true, UDP
# sockets, log level WARN); dnsmasq tuned (--no-ping --leasefile-ro
# --quiet-dhcp) and, once at a low rate, dnsmasq with its defaults (it pings
# every address before offering it).
#
# Needs root (namespaces). Installs kea-admin (perfdhcp), kea-dhcp4-server
# and dnsmasq-base if missing, with a policy-rc.d that stops their postinst
# scripts from starting daemons.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK="${QUICK:-0}"
PERIOD="${PERIOD:-10}"
CLIENTS="${CLIENTS:-100000}"
PIN="${PIN:-1}"
if [ "$QUICK" = 1 ]; then
  PERIOD="${PERIOD_QUICK:-5}"
  RATES="${RATES:-2000 8000 14000}"
else
  RATES="${RATES:-1000 2000 4000 6000 8000 10000 12000 14000 16000 18000 20000}"
fi
DNSMASQ_RATES="${DNSMASQ_RATES:-250 500 1000 1500 2000 3000}"
SERVERS="${SERVERS:-preboot kea dnsmasq}"
ROUNDS="${ROUNDS:-1}"
OUT="${OUT:-target/dhcp-peers}"
BEFORE="${BEFORE:-}"
if [ -n "$BEFORE" ]; then
  BEFORE="$(realpath "$BEFORE")"
  [ -x "$BEFORE" ] || { echo "dhcp-peers: BEFORE=$BEFORE is not an executable" >&2; exit 2; }
fi

die() { echo "dhcp-peers: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"

# ---- packages --------------------------------------------------------------
need=()
command -v perfdhcp >/dev/null || need+=(kea-admin)
command -v kea-dhcp4 >/dev/null || need+=(kea-dhcp4-server)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v taskset >/dev/null || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}"
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# ---- our server --------------------------------------------------------------
timeout 1800 cargo build --release --quiet --example preboot-dhcpd
PREBOOT_DHCPD="$PWD/target/release/examples/preboot-dhcpd"

# ---- rig ---------------------------------------------------------------------
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d /tmp/dhcp-peers.XXXXXX)"
TAG="dp$$"
CLI="$TAG-cli"
PIDS=()
NETNS=("$CLI")

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
  done
  for n in "${NETNS[@]}"; do
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$CLI"
ip -n "$CLI" link set lo up

# net <name> <second octet>: server namespace <TAG>-<name> with 10.<o>.0.1/16,
# client side 10.<o>.0.2/16; the DHCP subnet is 10.<o>.0.0/15.
net() {
  local name="$1" o="$2" ns="$TAG-$1"
  NETNS+=("$ns")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "s-$TAG-$o" netns "$ns" type veth peer name "c-$TAG-$o" netns "$CLI"
  ip -n "$ns" addr add "10.$o.0.1/16" dev "s-$TAG-$o"
  ip -n "$CLI" addr add "10.$o.0.2/16" dev "c-$TAG-$o"
  ip -n "$ns" link set "s-$TAG-$o" up
  ip -n "$CLI" link set "c-$TAG-$o" up
}

pin_server=()
pin_client=()
if [ "$PIN" = 1 ]; then
  pin_server=(taskset -c 0)
  pin_client=(taskset -c 1)
fi

declare -A OCTET=([preboot]=70 [kea]=72 [dnsmasq]=74 [proxy]=76 [dnsmasq-default]=78 [old]=80 [proxyold]=82)
declare -A SPID=()

start_preboot() { # name mode...
  local name="$1"; shift
  local o="${OCTET[$name]}" bin="$PREBOOT_DHCPD"
  case "$name" in old|proxyold) bin="$BEFORE" ;; esac
  ip netns exec "$TAG-$name" "${pin_server[@]}" "$bin" "$@" \
    --server-id "10.$o.0.1" --interface "s-$TAG-$o" --boot-bind none \
    --bios pxelinux.0 --uefi-x64 bootx64.efi --log warn \
    >"$OUT/$name.log" 2>&1 &
  SPID[$name]=$!
  PIDS+=("$!")
}

start_kea() {
  local o="${OCTET[kea]}"
  cat >"$WORK/kea.json" <<EOF
{
  "Dhcp4": {
    "interfaces-config": { "interfaces": [ "s-$TAG-$o" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$WORK/kea-leases.csv", "lfc-interval": 0 },
    "control-socket": { "socket-type": "unix", "socket-name": "$WORK/kea.sock" },
    "valid-lifetime": 3600,
    "subnet4": [ {
      "subnet": "10.$o.0.0/15",
      "pools": [ { "pool": "10.$o.1.0 - 10.$((o + 1)).255.254" } ],
      "next-server": "10.$o.0.1",
      "boot-file-name": "pxelinux.0"
    } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$OUT/kea.log" } ] } ]
  }
}
EOF
  ip netns exec "$TAG-kea" kea-dhcp4 -t "$WORK/kea.json" >"$WORK/kea-check.txt" 2>&1 || die "kea config rejected"
  KEA_PIDFILE_DIR="$WORK" KEA_LOCKFILE_DIR="$WORK" \
    ip netns exec "$TAG-kea" "${pin_server[@]}" kea-dhcp4 -c "$WORK/kea.json" \
    >>"$OUT/kea.log" 2>&1 &
  SPID[kea]=$!
  PIDS+=("$!")
}

start_dnsmasq() { # name extra-flags...
  local name="$1"; shift
  local o="${OCTET[$name]}"
  ip netns exec "$TAG-$name" "${pin_server[@]}" dnsmasq -k --conf-file=/dev/null \
    --port=0 --interface="s-$TAG-$o" --bind-interfaces \
    --dhcp-range="10.$o.1.0,10.$((o + 1)).255.254,255.254.0.0,1h" \
    --dhcp-lease-max=200000 --dhcp-leasefile="$WORK/$name.leases" \
    --dhcp-boot=pxelinux.0 --pid-file="$WORK/$name.pid" \
    --log-facility="$OUT/$name.log" "$@" &
  SPID[$name]=$!
  PIDS+=("$!")
}

cpu_ticks() { # pid -> utime+stime (clock ticks)
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
rcvbuf_errors() { # netns -> UDP datagrams dropped on full receive buffers
  ip netns exec "$1" cat /proc/net/snmp | awk '$1 == "Udp:" && $6 ~ /^[0-9]+$/ { print $6 }'
}
cpu_ns() { # pid -> run time of its live threads (ns)
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}
HZ="$(getconf CLK_TCK)"

# PXE options of a BIOS PXE ROM (as hex for perfdhcp -o).
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
PXE_OPTS=(
  -o "60,$(hex 'PXEClient:Arch:00000:UNDI:002001')"
  -o "93,0000"
  -o "94,010201"
  -o "97,00$(printf '5e%030x' 1)"
)

RESULTS="$OUT/steps.tsv"
printf 'round\tserver\trate\tsent\tacks\tdrop_pct\tcpu_us_per_dora\tachieved_rate\ttick_us_per_dora\tserver_rcvbuf_drops\tperfdhcp_rcvbuf_drops\n' >"$RESULTS"
ROUND=1

# step <name> <rate> [-i]: one perfdhcp run; appends to RESULTS, prints the
# drop percentage.
step() {
  local name="$1" rate="$2" mode="${3:-}" o="${OCTET[$1]}" pid="${SPID[$1]}"
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is not running; see $OUT/$name.log"
  local before after nbefore nafter log="$OUT/perfdhcp-$name-$rate-r$ROUND.txt"
  local args=(-4 -g single -l "10.$o.0.2" -L 67 -r "$rate" -R "$CLIENTS" -p "$PERIOD" -W 500000)
  [ -n "$mode" ] && args+=("$mode")
  local sbefore cbefore safter cafter
  sbefore="$(rcvbuf_errors "$TAG-$name")"
  cbefore="$(rcvbuf_errors "$CLI")"
  before="$(cpu_ticks "$pid")"
  nbefore="$(cpu_ns "$pid")"
  timeout $((PERIOD + 30)) ip netns exec "$CLI" "${pin_client[@]}" \
    perfdhcp "${args[@]}" "${PXE_OPTS[@]}" "10.$o.0.1" >"$log" 2>&1 || true
  after="$(cpu_ticks "$pid")"
  nafter="$(cpu_ns "$pid")"
  safter="$(rcvbuf_errors "$TAG-$name")"
  cafter="$(rcvbuf_errors "$CLI")"
  # Sent DISCOVERs and received final answers (ACK, or OFFER with -i).
  local sent got
  sent="$(awk '/Statistics for: DISCOVER-OFFER/{f=1} f && /^sent packets:/{print $3; exit}' "$log")"
  if [ -n "$mode" ]; then
    got="$(awk '/Statistics for: DISCOVER-OFFER/{f=1} f && /^received packets:/{print $3; exit}' "$log")"
  else
    got="$(awk '/Statistics for: REQUEST-ACK/{f=1} f && /^received packets:/{print $3; exit}' "$log")"
  fi
  sent="${sent:-0}"; got="${got:-0}"
  awk -v n="$name" -v r="$rate" -v s="$sent" -v g="$got" -v b="$before" -v a="$after" \
      -v nb="$nbefore" -v na="$nafter" -v hz="$HZ" -v p="$PERIOD" -v round="$ROUND" \
      -v sd="$((safter - sbefore))" -v cd="$((cafter - cbefore))" '
    BEGIN {
      drop = s > 0 ? 100 * (s - g) / s : 100; if (drop < 0) drop = 0
      ticks = g > 0 ? (a - b) / hz * 1e6 / g : 0
      cpu = g > 0 ? (na - nb) / 1e3 / g : 0
      printf "%d\t%s\t%d\t%d\t%d\t%.2f\t%.1f\t%.0f\t%.1f\t%d\t%d\n", round, n, r, s, g, drop, cpu, g / p, ticks, sd, cd
    }' | tee -a "$RESULTS" >&2
  tail -n 1 "$RESULTS" | cut -f6
}

passes() { awk -v d="$1" 'BEGIN { exit !(d < 1.0) }'; }
# step_twice <name> <rate> [-i]: a failing step gets one more try.
step_twice() {
  local d
  d="$(step "$@")"
  passes "$d" || d="$(step "$@")"
  passes "$d"
}

# ---- run ---------------------------------------------------------------------
echo "== machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/machine.txt"
echo "== perfdhcp $(perfdhcp -v 2>&1 | head -n1), kea-dhcp4 $(kea-dhcp4 -v), $(dnsmasq --version | head -n1)" | tee -a "$OUT/machine.txt"

FULLS="$SERVERS"
PROXIES="proxy"
if [ -n "$BEFORE" ]; then
  FULLS="$SERVERS old"
  PROXIES="proxyold proxy"
fi
for s in $FULLS $PROXIES; do net "$s" "${OCTET[$s]}"; done
for s in $FULLS $PROXIES; do
  o="${OCTET[$s]}"
  case "$s" in
    preboot|old) start_preboot "$s" --full --subnet "10.$o.0.0/15" \
               --pool "10.$o.1.0-10.$((o + 1)).255.254" \
               --lease-file "$WORK/$s.leases" ;;
    proxy|proxyold) start_preboot "$s" --proxy ;;
    kea) start_kea ;;
    dnsmasq) start_dnsmasq dnsmasq --no-ping --leasefile-ro --quiet-dhcp ;;
  esac
done
sleep 2

for ROUND in $(seq 1 "$ROUNDS"); do
  declare -A FAILED=()
  for rate in $RATES; do
    for s in $FULLS; do
      [ "$s" = dnsmasq ] && continue
      [ -n "${FAILED[$s]:-}" ] && continue
      step_twice "$s" "$rate" || FAILED[$s]=1
    done
  done
  if [[ " $SERVERS " == *" dnsmasq "* ]]; then
    for rate in $DNSMASQ_RATES; do
      step_twice dnsmasq "$rate" || break
    done
  fi
  declare -A PFAILED=()
  for rate in $RATES; do
    for s in $PROXIES; do
      [ -n "${PFAILED[$s]:-}" ] && continue
      step_twice "$s" "$rate" -i || PFAILED[$s]=1
    done
  done
done
if [ "${DNSMASQ_DEFAULT:-1}" = 1 ] && [[ " $SERVERS " == *" dnsmasq "* ]]; then
  net dnsmasq-default "${OCTET[dnsmasq-default]}"
  start_dnsmasq dnsmasq-default --quiet-dhcp
  sleep 1
  step dnsmasq-default 2 >/dev/null || true
fi

# ---- summary -----------------------------------------------------------------
# Per server and round: the highest rate with < 1 % drops, its drops and CPU
# per DORA; then CPU per DORA against kea at the rates both passed.
echo
echo "== best passing step per server and round (rate = requested -r; achieved = answers/s)"
awk -F'\t' 'NR > 1 && $6 < 1.0 {
    k = $1 "\t" $2
    if (!(k in best) || $3 > best[k]) { best[k] = $3; line[k] = $0 }
  }
  END { for (k in line) print line[k] }' "$RESULTS" | sort -k2,2 -k1,1n | tee "$OUT/best.tsv" |
  awk -F'\t' 'BEGIN { printf "%-5s %-16s %8s %8s %7s %12s %12s\n", "round", "server", "rate/s", "ach./s", "drops%", "CPU us/DORA", "(ticks)" }
    { printf "%-5s %-16s %8d %8d %7.2f %12.1f %12.1f\n", $1, $2, $3, $8, $6, $7, $9 }'
echo
echo "== CPU per DORA, preboot / kea, at the rates both passed"
awk -F'\t' 'NR > 1 && $6 < 1.0 { cpu[$1 "\t" $2 "\t" $3] = $7 }
  END {
    for (k in cpu) {
      split(k, f, "\t")
      if (f[2] != "preboot") continue
      kk = f[1] "\tkea\t" f[3]
      if (kk in cpu && cpu[kk] > 0)
        printf "round %s rate %6d: preboot %6.1f us, kea %6.1f us, ratio %.2f\n", f[1], f[3], cpu[k], cpu[kk], cpu[k] / cpu[kk]
    }
  }' "$RESULTS" | sort -k2,2n -k4,4n | tee "$OUT/ratios.txt"
if [ -n "$BEFORE" ]; then
  echo
  echo "== before / after: CPU per DORA at the rates both passed (after = this tree)"
  awk -F'\t' 'NR > 1 && $6 < 1.0 { cpu[$1 "\t" $2 "\t" $3] = $7 }
    END {
      pair["preboot"] = "old"; pair["proxy"] = "proxyold"
      for (k in cpu) {
        split(k, f, "\t")
        if (!(f[2] in pair)) continue
        kk = f[1] "\t" pair[f[2]] "\t" f[3]
        if (kk in cpu && cpu[kk] > 0)
          printf "round %s %-8s rate %6d: after %6.1f us, before %6.1f us, after/before %.2f\n", f[1], f[2], f[3], cpu[k], cpu[kk], cpu[k] / cpu[kk]
      }
    }' "$RESULTS" | sort -k3,3 -k5,5n | tee "$OUT/before-after.txt"
fi
echo
echo "== every step: $RESULTS"
