#!/usr/bin/env bash
# Boot-to-marker time of real PXE firmware under QEMU, per case, with our
# example boot server and with dnsmasq as the server, in the same run and
# with the same harness (tests/firmware/boot.sh: same namespace, boot tree,
# firmware, kernel and checks; a boot counts only if it PASSes).
#
#   sudo benches/firmware-boot-times.sh [--runs N] [--cases "bios-full uefi-proxy ..."]
#
# Time is from QEMU's start to the marker on the serial console. The
# servers alternate run by run so that machine load hits both alike. Prints
# a Markdown table: median seconds per case and server, and ours/dnsmasq.
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

declare -A times
for c in $cases; do
  fw="${c%-*}" mode="${c#*-}"
  for ((i = 1; i <= runs; i++)); do
    for s in ours dnsmasq; do
      line=$(tests/firmware/boot.sh --firmware "$fw" --mode "$mode" --server "$s" \
        --server-bin "$bin" --timeout 240 2>>"$log" | tail -n 1) || true
      echo "$line" | tee -a "$log" >&2
      if [[ "$line" =~ ^RESULT\ PASS.*boot_s=([0-9.]+) ]]; then
        times[$c,$s]+="${BASH_REMATCH[1]} "
      else
        times[$c,$s]+="fail "
      fi
    done
  done
done

echo
echo "| case | preboot-server (s) | dnsmasq (s) | ours / dnsmasq | runs (ours; dnsmasq) |"
echo "|---|---|---|---|---|"
for c in $cases; do
  o=$(tr ' ' '\n' <<<"${times[$c,ours]}" | grep -E '^[0-9.]+$' | median)
  d=$(tr ' ' '\n' <<<"${times[$c,dnsmasq]}" | grep -E '^[0-9.]+$' | median)
  r=$(awk -v o="$o" -v d="$d" 'BEGIN {if (o == "-" || d == "-") print "-"; else printf "%.2f", o / d}')
  echo "| $c | $o | $d | $r | ${times[$c,ours]% }; ${times[$c,dnsmasq]% } |"
done
echo
echo "accel: $(cat target/firmware/cache/ACCEL 2>/dev/null || echo ?), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); log: $log"
