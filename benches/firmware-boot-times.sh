#!/usr/bin/env bash
# Boot-to-marker time of real PXE firmware under QEMU, per case, with our
# example boot server and with dnsmasq as the server, in the same run and
# with the same harness (tests/firmware/boot.sh: same namespace, boot tree,
# firmware, kernel and checks; a boot counts only if it PASSes).
#
#   sudo benches/firmware-boot-times.sh [--runs N] [--cases "bios-full uefi-proxy ..."]
#
# boot: seconds from QEMU's start to the marker on the serial console (all
# of it: firmware, DHCP, TFTP, kernel). net: seconds from the guest's first
# DISCOVER to the end of its last TFTP transfer, read from the capture (the
# part the servers decide; the rest is the same guest code under TCG and
# varies with machine load). The servers alternate run by run so that load
# hits both alike. srv: the mean TFTP server turnaround (a client ACK in,
# the next DATA out, in ms, from the capture). Prints a Markdown table of
# medians and ours/dnsmasq.
# Needs what tests/firmware.rs needs, plus dnsmasq (Debian dnsmasq-base).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
cases="bios-full bios-proxy uefi-full uefi-proxy"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--cases \"bios-full bios-proxy uefi-full uefi-proxy\"]" >&2; exit 2 ;;
  esac
done

cargo build --quiet --release --example preboot-server
bin=target/release/examples/preboot-server
log="target/firmware/bench-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p target/firmware

median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

declare -A times nets srvs
for c in $cases; do
  fw="${c%-*}" mode="${c#*-}"
  for ((i = 1; i <= runs; i++)); do
    for s in ours dnsmasq; do
      line=$(tests/firmware/boot.sh --firmware "$fw" --mode "$mode" --server "$s" \
        --server-bin "$bin" --timeout 240 2>>"$log" | tail -n 1) || true
      echo "$line" | tee -a "$log" >&2
      if [[ "$line" =~ ^RESULT\ PASS.*boot_s=([0-9.]+)\ net_s=([0-9.]+)\ server_ms=([0-9.]+) ]]; then
        times[$c,$s]+="${BASH_REMATCH[1]} "
        nets[$c,$s]+="${BASH_REMATCH[2]} "
        srvs[$c,$s]+="${BASH_REMATCH[3]} "
      else
        times[$c,$s]+="fail "
        nets[$c,$s]+="fail "
        srvs[$c,$s]+="fail "
      fi
    done
  done
done

echo
ratio() { awk -v o="$1" -v d="$2" 'BEGIN {if (o == "-" || d == "-") print "-"; else printf "%.2f", o / d}'; }
med() { tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | median; }
echo "| case | boot, ours (s) | boot, dnsmasq (s) | ours / dnsmasq | net, ours (s) | net, dnsmasq (s) | ours / dnsmasq | srv, ours (ms) | srv, dnsmasq (ms) |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $cases; do
  bo=$(med "${times[$c,ours]}") bd=$(med "${times[$c,dnsmasq]}")
  no=$(med "${nets[$c,ours]}") nd=$(med "${nets[$c,dnsmasq]}")
  so=$(med "${srvs[$c,ours]}") sd=$(med "${srvs[$c,dnsmasq]}")
  echo "| $c | $bo | $bd | $(ratio "$bo" "$bd") | $no | $nd | $(ratio "$no" "$nd") | $so | $sd |"
done
echo
for c in $cases; do
  echo "$c runs: boot ours ${times[$c,ours]% }; dnsmasq ${times[$c,dnsmasq]% }; net ours ${nets[$c,ours]% }; dnsmasq ${nets[$c,dnsmasq]% }"
done
echo
echo "accel: $(cat target/firmware/cache/ACCEL 2>/dev/null || echo ?), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); log: $log"
