#!/usr/bin/env bash
# The Linux parts of the preboot client (hardware.rs, linux.rs) on a real
# kernel in a QEMU guest, from the static musl build:
#
#   examples/preboot-client/vm-check.sh [--bin PATH] [--accel kvm|tcg] [--out DIR]
#
# The guest is booted directly (-kernel/-initrd, no network) with the
# kernel of tests/firmware/prepare.sh's cache and an initrd of busybox and
# preboot-client, with `-smbios type=1,uuid=…` and an e1000. Its /init runs:
#   1. preboot-client --probe: PASS needs the UUID QEMU was given, printed
#      as the kernel shows it, and its option-97 bytes (first three fields
#      swapped: SMBIOS 2.6+ order), the SMBIOS manufacturer and the e1000's
#      PCI ids among the PCI devices. (The cached Debian kernel has its
#      e1000 and virtio-blk drivers as modules, which are not in the cache,
#      so the guest shows no NIC and no disk: those are checked by the unit
#      tests on fake trees.)
#   2. preboot-client --keys: the harness types F8 (ESC [ 19 ~), Ctrl+C and
#      Alt+x on the serial console; PASS needs the three decoded (Ctrl+C
#      is a key in raw mode, not a signal);
#   3. preboot-client --kexec /vmlinuz /stage2.img "... preboot.task=<nonce>":
#      PASS needs the second kernel's init to print its command line with
#      this run's nonce (kexec_file_load + reboot(LINUX_REBOOT_CMD_KEXEC)).
# The last line is `RESULT PASS` or `RESULT FAIL <why>`; exit status 0 on
# PASS. Bounded: the guest has a hard timeout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$repo/target/x86_64-unknown-linux-musl/release/examples/preboot-client"
cache="$repo/target/firmware/cache"
accel=""
out=""
timeout_s=240
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--accel kvm|tcg] [--out DIR]" >&2; exit 2 ;;
  esac
done
die() { echo "vm-check.sh: $*" >&2; echo "RESULT FAIL setup: $*"; exit 1; }
for t in qemu-system-x86_64 cpio gzip timeout file; do
  command -v "$t" >/dev/null || die "missing $t"
done
[[ -x "$bin" ]] || die "no $bin (cargo build --release --example preboot-client --target x86_64-unknown-linux-musl)"
file -L "$bin" | grep -qE 'statically linked|static-pie linked' || die "$bin is not static"
[[ -f "$cache/vmlinuz" && -x "$cache/busybox" ]] || die "no kernel/busybox in $cache (run tests/firmware/prepare.sh)"
# TCG by default: it boots this small guest in seconds, and a /dev/kvm
# that exists may still not run guests (nested virtualisation).
[[ -n "$accel" ]] || accel=tcg
[[ -n "$out" ]] || out="$(mktemp -d /tmp/preboot-vm-check.XXXXXX)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

nonce="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
uuid="8b7c1d4e-e2e0-4c5a-9f3b-$(printf '%012x' "$nonce")"
# Option 97 / SMBIOS bytes of that UUID: the first three fields swapped.
want_wire="4e1d7c8b-e0e2-5a4c-9f3b-$(printf '%012x' "$nonce")"

# Stage 2: the kernel kexec'd into; its init prints its command line.
s2="$out/stage2"
rm -rf "$s2" && mkdir -p "$s2/bin" "$s2/proc"
cp "$cache/busybox" "$s2/bin/busybox"
cat >"$s2/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "VMCHECK-STAGE2 $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
EOF
chmod +x "$s2/init"
(cd "$s2" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/stage2.img"

# Stage 1: busybox, preboot-client, the kernel and stage 2.
s1="$out/stage1"
rm -rf "$s1" && mkdir -p "$s1/bin" "$s1/proc" "$s1/sys" "$s1/dev" "$s1/tmp"
cp "$cache/busybox" "$s1/bin/busybox"
strip -o "$s1/bin/preboot-client" "$bin" 2>/dev/null || cp "$bin" "$s1/bin/preboot-client"
cp "$cache/vmlinuz" "$s1/vmlinuz"
cp "$out/stage2.img" "$s1/stage2.img"
cat >"$s1/init" <<EOF
#!/bin/busybox sh
bb=/bin/busybox
\$bb mount -t proc proc /proc
\$bb mount -t sysfs sysfs /sys
\$bb mount -t devtmpfs devtmpfs /dev
echo VMCHECK-PROBE-BEGIN
/bin/preboot-client --probe
echo VMCHECK-PROBE-END
/bin/preboot-client --keys 20
echo VMCHECK-KEYS-END
/bin/preboot-client --kexec /vmlinuz /stage2.img "console=ttyS0 panic=-1 preboot.task=$nonce"
echo VMCHECK-KEXEC-FAILED
\$bb poweroff -f
EOF
chmod +x "$s1/init"
(cd "$s1" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/stage1.img"

rm -f "$out/serial.in" "$out/serial.out"
mkfifo "$out/serial.in" "$out/serial.out"
: >"$out/serial.log"
cat "$out/serial.out" >>"$out/serial.log" &
cat_pid=$!
timeout -s KILL "$timeout_s" qemu-system-x86_64 -accel "$accel" -m 512 -nodefaults \
  -no-user-config -display none -vga none -monitor none -no-reboot \
  -chardev "pipe,id=ser0,path=$out/serial" -serial chardev:ser0 \
  -smbios "type=1,uuid=$uuid" \
  -device e1000,mac=52:54:00:12:34:56 \
  -kernel "$cache/vmlinuz" -initrd "$out/stage1.img" \
  -append "console=ttyS0 panic=-1 quiet" >"$out/qemu.log" 2>&1 &
qemu_pid=$!
# Keep the input pipe open for the whole run.
exec 3<>"$out/serial.in"
typed=0
start=$SECONDS
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [[ $typed -eq 0 ]] && grep -aqF "press keys for" "$out/serial.log"; then
    sleep 0.5
    printf '\033[19~' >&3; sleep 0.3
    printf '\003' >&3; sleep 0.3
    printf '\033x' >&3
    typed=1
  fi
  (( SECONDS - start < timeout_s + 5 )) || break
  sleep 0.2
done
wait "$qemu_pid" || true
exec 3>&-
wait "$cat_pid" 2>/dev/null || true

log="$out/serial.log"
fail() { echo "serial log: $log" >&2; echo "RESULT FAIL $*"; exit 1; }
probe="$(sed -n '/VMCHECK-PROBE-BEGIN/,/VMCHECK-PROBE-END/p' "$log" | tr -d '\r')"
echo "$probe"
grep -qF "uuid: $uuid (option 97 bytes $want_wire)" <<<"$probe" ||
  fail "probe: uuid line is not 'uuid: $uuid (option 97 bytes $want_wire)'"
grep -qE "^pci devices: .* 8086:100e" <<<"$probe" || fail "probe: no e1000 (8086:100e) among the PCI devices"
grep -qF "manufacturer: QEMU" <<<"$probe" || fail "probe: no SMBIOS manufacturer"
keys="$(tr -d '\r' <"$log" | grep -a '^key: ' || true)"
echo "$keys"
grep -qF "key: F8 (modifiers 0x0, code 0x88)" <<<"$keys" || fail "keys: no F8"
grep -qF "key: Ctrl+c " <<<"$keys" || fail "keys: no Ctrl+c"
grep -qF "key: Alt+x " <<<"$keys" || fail "keys: no Alt+x"
if grep -aq "VMCHECK-KEXEC-FAILED" "$log"; then
  fail "kexec: $(grep -a 'kexec failed' "$log" | tr -d '\r' | head -n 1)"
fi
stage2="$(tr -d '\r' <"$log" | grep -a '^VMCHECK-STAGE2 ' || true)"
echo "$stage2"
grep -qF "preboot.task=$nonce" <<<"$stage2" || fail "kexec: no second kernel with preboot.task=$nonce"
echo "RESULT PASS accel=$accel out=$out"
