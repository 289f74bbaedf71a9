#!/usr/bin/env bash
# One real-firmware network boot, checked end to end.
#
#   tests/firmware/boot.sh --firmware bios|uefi --mode full|proxy
#       [--server ours|dnsmasq] [--server-bin PATH] [--menu never|always|keypress]
#       [--fault none|truncate|wrong|wrong-arch] [--timeout SECONDS]
#       [--accel tcg|kvm|auto] [--out DIR] [--keep] [--mtftp]
#   tests/firmware/boot.sh --firmware bios --mode proxy
#       --flow restore|local|menu --flow-kit DIR [--client-bin PATH] ...
#
# --accel auto (default) uses KVM only if a probe boot under KVM works.
# --menu always makes the firmware wait for a key: the harness then types
# Enter on the serial console (SeaBIOS passes it to iPXE) once the prompt
# is shown, which boots the default item. With our server, --menu sets the
# firmware's PXE boot prompt: the [pxe_prompt] table of the config it writes
# (called [menu] before; not the preboot client's menu, which is the policy's).
#
# It creates its own network namespace (bridge br0 192.168.77.1/24 and a
# tap device, nothing routed out), starts the boot server there on the
# standard ports (67, 4011, 69) — our example `preboot-server` or dnsmasq
# with the same boot tree — and, in proxy mode, busybox `udhcpd` in a second
# namespace on the same bridge to give the address. It captures the bridge
# with dumpcap (started before the guest, stopped after it), then boots
# QEMU on the tap with -boot n and a hard timeout:
#   bios: SeaBIOS + QEMU's iPXE option ROM on e1000, which loads Debian's
#         pxelinux.0, then ldlinux.c32, pxelinux.cfg/default, vmlinuz and
#         initrd.img;
#   uefi: OVMF on q35 with virtio-net and no option ROM (EDK2's own PXE
#         stack), which loads preboot-x64.efi, a unified kernel image of the
#         same kernel and initrd.
# The initrd's /init (busybox) prints `PREBOOT-FIRMWARE-OK <nonce>` to
# ttyS0 and powers off; the nonce is random per run and built into the
# initrd of that run.
#
# PASS needs all of:
#   - the serial console shows the marker with this run's nonce;
#   - the capture shows DISCOVER from the guest with option 60 PXEClient
#     and option 93 = 0 (bios) or 7/9 (uefi), an OFFER from the boot
#     server, REQUEST and ACK, and in proxy mode the REQUEST/ACK exchange
#     on port 4011 with the boot server;
#   - the boot file the boot server names is the one for the architecture;
#   - every TFTP transfer that carried data completed (short last block
#     acknowledged) with exactly the bytes of the file in the expected tree
#     (sha256), and a "file not found" was only answered for files that are
#     not in the tree;
#   - with --menu always|keypress: the menu prompt text of this run is on
#     the serial console;
#   - with --server ours (which then runs its transaction server on 4012,
#     with a key made for this run): the boot server's OFFER, and its ACK
#     (on 4011 in proxy mode, on 67 in full mode), carry option 43
#     sub-options 128 = 192.168.77.1:4012 and 129 = the public half of
#     that key, computed here by openssl (docs/transaction-protocol.md,
#     "How the preboot client finds the transaction server"), so a PASS
#     proves that the firmware booted from answers that name it.
#
# --flow runs the preboot flow (issue 14, steps 5-19 of DESIGN.md) on the
# BIOS boot: the initrd's /init loads the e1000 and virtio modules (cached
# from the kernel's package by prepare.sh), then runs the static
# `preboot-client` (--client-bin, x86_64-unknown-linux-musl) with
#   --interface eth0 --disk /dev/vda --no-boot-file --console
#   --server-key @/etc/preboot/server.key --handover kexec --work-dir /tmp/env
# against the boot server's transaction server (udp 4012). QEMU gets the
# disk image of the flow kit as /dev/vda (virtio) and a fixed SMBIOS UUID.
# The flow kit (--flow-kit DIR, made by tests/firmware.rs) holds disk.img,
# a raw disk image whose key record (protocol §11.1) is already provisioned,
# and kit.env with SERVER_PRIVATE, SERVER_PUBLIC (the transaction server's
# key) and WORKSTATION_PUBLIC (the disk's key): the server is configured
# with that private key (boot.sh checks with openssl that SERVER_PUBLIC is
# its public half) and binds the workstation key to the VM's MAC (no
# auto-enrolment). The policy:
#   restore: the VM's workstation object has image_next_boot and an image;
#            the client fetches the imaging environment (imaging/vmlinuz,
#            the same kernel, and imaging/initrd.img, a second busybox
#            initrd) and kexecs into it; that init prints
#            `PREBOOT-IMAGING-OK <nonce> tasks=<preboot.tasks=> cmdline-nonce=<nonce=>`
#            from its /proc/cmdline and powers off;
#   local:   the object has no task and no rule matches: the client prints
#            PREBOOT-LOCAL-BOOT, init prints `PREBOOT-FLOW-DONE <nonce> rc=0`;
#   menu:    the server policy's menu is on-key-press with hotkey F8; when
#            the client says "press F8" the harness types F8's escape
#            sequence (ESC [ 19 ~) on the serial console; the client prints
#            PREBOOT-MENU and the entries (labels carry the nonce); the
#            harness types 3 at "choose 1-3" (boot the local disk, not the
#            default entry), the client takes it without asking for tasks
#            (so no TaskQuery here), and init prints the DONE marker.
# A flow PASS needs, besides the marker: the DHCP checks above for both the
# firmware's and the client's exchange (each: DISCOVER with PXEClient and
# option 93 = 0, proxy OFFER, REQUEST/ACK with udhcpd, REQUEST/ACK on
# 4011); the TFTP checks for every file (the imaging environment's too);
# the transaction exchange on udp 4012 read from the capture by the header
# layout of docs/transaction-protocol.md §2 (Hello/Cookie, Init/Accept with
# status 0, sealed requests and replies — tag length 16, the session id of
# the Accept — for WorkstationInfo, MenuQuery and (but in menu, where the
# menu choice ends the flow) TaskQuery, every frame's
# length = 24 + payload + tag); the server log: its public key is the kit's
# and the session was established from the VM's address, with only the
# kit's workstation key bound (auto-enrolment off); and the serial console:
# the client's public key is the kit's.
# --mtftp (with --server ours; issue 16) configures the boot server's
# [mtftp] service for the BIOS boot file (group 239.77.1.1, client port
# 3001) and the UEFI one (239.77.1.2, 3002, if it fits in 65,535 blocks),
# server port 1759, listen 2 s, delay 5 s; the groups exist only on the
# namespace's bridge. The firmware still boots by TFTP (QEMU's iPXE and
# OVMF do not use MTFTP), and the PASS also needs, in the capture, option
# 43 sub-options 1-5 (PXE 2.1 §2.4.5, as tshark decodes them: group,
# client port, server port, timeout, delay) in the OFFER to a BIOS client
# with exactly those values (and the same in any other answer that has
# them), and none of sub-options 1-5 in any answer to a UEFI client (EDK2
# discards offers that carry them).
# Faults (to prove the checks can fail): truncate = the served vmlinuz (bios)
# or preboot-x64.efi (uefi) is cut in half; wrong = one byte of it is
# flipped; wrong-arch = the server is configured to give the other
# architecture's boot file; unbound-key (with --flow) = the server binds
# another key to the VM's MAC, so the session is never established.
#
# Output: the run directory holds serial.log, capture.pcapng, server.log,
# dhcp.tsv, tftp.tsv, timeline.txt and result. The last line printed is
#   RESULT PASS <case> boot_s=<seconds to marker> net_s=<seconds from the
#       first DISCOVER to the end of the last TFTP transfer>
#       server_ms=<mean TFTP server turnaround, client ACK to next DATA,
#       in milliseconds> accel=<tcg|kvm>
# or
#   RESULT FAIL <case> <reason>; <reason>; ...
# Exit status: 0 PASS, 1 FAIL, 2 the harness itself could not run.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

firmware="" mode="" server="ours" server_bin="" menu="never" fault="none"
timeout_s=240 accel="auto" out="" keep=0 flow="none" flow_kit="" client_bin=""
mtftp=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --firmware) firmware="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --server) server="$2"; shift 2 ;;
    --server-bin) server_bin="$2"; shift 2 ;;
    --menu) menu="$2"; shift 2 ;;
    --fault) fault="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --mtftp) mtftp=1; shift ;;
    --flow) flow="$2"; shift 2 ;;
    --flow-kit) flow_kit="$2"; shift 2 ;;
    --client-bin) client_bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "boot.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

setup_fail() { echo "RESULT ERROR ${case_name:-?} $*"; exit 2; }

[[ "$firmware" == bios || "$firmware" == uefi ]] || setup_fail "--firmware bios|uefi"
[[ "$mode" == full || "$mode" == proxy ]] || setup_fail "--mode full|proxy"
[[ "$server" == ours || "$server" == dnsmasq ]] || setup_fail "--server ours|dnsmasq"
[[ "$menu" == never || "$menu" == always || "$menu" == keypress ]] || setup_fail "--menu never|always|keypress"
case "$fault" in none|truncate|wrong|wrong-arch|unbound-key) ;; *) setup_fail "--fault none|truncate|wrong|wrong-arch|unbound-key" ;; esac
case "$flow" in none|restore|local|menu) ;; *) setup_fail "--flow none|restore|local|menu" ;; esac
case_name="$firmware-$mode-$server"
[[ "$menu" != never ]] && case_name+="-menu-$menu"
[[ "$flow" != none ]] && case_name+="-flow-$flow"
[[ "$fault" != none ]] && case_name+="-fault-$fault"
[[ $mtftp -eq 1 ]] && case_name+="-mtftp"
[[ $mtftp -eq 0 || "$server" == ours ]] || setup_fail "--mtftp needs --server ours"

if [[ "$flow" != none ]]; then
  [[ "$firmware" == bios && "$mode" == proxy && "$server" == ours && "$menu" == never ]] ||
    setup_fail "--flow runs on --firmware bios --mode proxy --server ours --menu never"
  [[ -n "$flow_kit" && -f "$flow_kit/disk.img" && -f "$flow_kit/kit.env" ]] ||
    setup_fail "--flow needs --flow-kit DIR with disk.img and kit.env (tests/firmware.rs makes it)"
  [[ -n "$client_bin" ]] || client_bin="$repo/target/x86_64-unknown-linux-musl/release/examples/preboot-client"
  [[ -x "$client_bin" ]] || setup_fail "missing client binary $client_bin (cargo build --release --example preboot-client --target x86_64-unknown-linux-musl)"
  command -v readelf >/dev/null || setup_fail "missing program readelf (install Debian package binutils)"
  command -v strip >/dev/null || setup_fail "missing program strip (install Debian package binutils)"
  # The initrd has no dynamic loader: the client must be static.
  readelf -lW "$client_bin" 2>/dev/null | grep -q 'Requesting program interpreter' &&
    setup_fail "$client_bin is dynamically linked (build it for x86_64-unknown-linux-musl)"
  # SERVER_PRIVATE, SERVER_PUBLIC, WORKSTATION_PUBLIC: 64 hex digits each.
  SERVER_PRIVATE="" SERVER_PUBLIC="" WORKSTATION_PUBLIC=""
  while IFS='=' read -r k v; do
    case "$k" in SERVER_PRIVATE|SERVER_PUBLIC|WORKSTATION_PUBLIC)
      [[ "$v" =~ ^[0-9a-f]{64}$ ]] || setup_fail "kit.env: $k is not 64 hex digits"
      printf -v "$k" '%s' "$v" ;;
    esac
  done <"$flow_kit/kit.env"
  [[ -n "$SERVER_PRIVATE" && -n "$SERVER_PUBLIC" && -n "$WORKSTATION_PUBLIC" ]] ||
    setup_fail "kit.env needs SERVER_PRIVATE, SERVER_PUBLIC and WORKSTATION_PUBLIC"
elif [[ "$fault" == unbound-key ]]; then
  setup_fail "--fault unbound-key needs --flow"
fi

[[ $EUID -eq 0 ]] || setup_fail "needs root (network namespaces, tap)"
for t in ip qemu-system-x86_64 dumpcap tshark cpio gzip xxd sha256sum awk timeout openssl; do
  command -v "$t" >/dev/null || setup_fail "missing program $t"
done
if [[ "$mode" == proxy ]]; then
  command -v udhcpd >/dev/null || setup_fail "missing program udhcpd"
fi
if [[ "$server" == dnsmasq ]]; then
  command -v dnsmasq >/dev/null || setup_fail "missing program dnsmasq"
else
  [[ -n "$server_bin" ]] || server_bin="$repo/target/release/examples/preboot-server"
  [[ -x "$server_bin" ]] || setup_fail "missing server binary $server_bin (cargo build --release --example preboot-server)"
fi

cache="$("$here/prepare.sh")" || setup_fail "prepare.sh failed"
# Each firmware needs only its own files (prepare.sh copies what is
# installed); the wrong-arch fault also serves the other firmware's file.
need_cached() { [[ -f "$cache/$1" ]] || setup_fail "missing $1 (install Debian package $2)"; }
need_bios() {
  need_cached pxelinux.0 pxelinux
  need_cached ldlinux.c32 syslinux-common
  [[ -f /usr/lib/ipxe/qemu/efi-e1000.rom ]] || setup_fail "missing /usr/lib/ipxe/qemu/efi-e1000.rom (install Debian package ipxe-qemu)"
}
need_uefi() {
  command -v objcopy >/dev/null || setup_fail "missing program objcopy (install Debian package binutils)"
  need_cached linuxx64.efi.stub systemd-boot-efi
  need_cached OVMF_CODE.fd ovmf
  need_cached OVMF_VARS.fd ovmf
}
if [[ "$firmware" == bios ]]; then need_bios; else need_uefi; fi
if [[ "$fault" == wrong-arch ]]; then need_bios; need_uefi; fi

nonce="$(head -c 12 /dev/urandom | xxd -p)"
marker="PREBOOT-FIRMWARE-OK $nonce"
case "$flow" in
  restore) marker="PREBOOT-IMAGING-OK $nonce" ;;
  local|menu) marker="PREBOOT-FLOW-DONE $nonce rc=0" ;;
esac
# The SMBIOS system UUID QEMU gives the flow's VM (-smbios type=1).
vm_uuid="5eb00700-f10f-4c2a-9e37-0000000000a1"
prompt="preboot menu $nonce"
[[ -n "$out" ]] || out="$repo/target/firmware/runs/$case_name-$nonce"
mkdir -p "$out" || setup_fail "cannot create $out"
out="$(cd "$out" && pwd)"
echo "boot.sh: case $case_name, nonce $nonce, run dir $out" >&2

# ---------------------------------------------------------------- boot tree
root="$out/root"      # what the server serves
expect="$out/expected" # what the guest must receive
rm -rf "$root" "$expect"
mkdir -p "$expect/pxelinux.cfg" "$out/initrd/bin" "$out/initrd/dev" "$out/initrd/proc" ||
  setup_fail "mkdir"
cp "$cache/busybox" "$out/initrd/bin/busybox"
ln -sf busybox "$out/initrd/bin/sh"
cat >"$out/initrd/init" <<EOF
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "$marker" >/dev/ttyS0
/bin/busybox poweroff -f
EOF
if [[ "$flow" != none ]]; then
  # The preboot client's initrd: modules for the NIC and the disk, the
  # static client, the server's public key.
  mkdir -p "$out/initrd/sys" "$out/initrd/tmp" "$out/initrd/etc/preboot" "$out/initrd/lib/modules"
  cp "$cache"/modules/*.ko "$cache/modules/ORDER" "$out/initrd/lib/modules/"
  strip -o "$out/initrd/preboot-client" "$client_bin" || setup_fail "strip $client_bin"
  echo "$SERVER_PUBLIC" >"$out/initrd/etc/preboot/server.key"
  cat >"$out/initrd/init" <<EOF
#!/bin/sh
bb=/bin/busybox
\$bb mount -t devtmpfs devtmpfs /dev
\$bb mount -t proc proc /proc
\$bb mount -t sysfs sysfs /sys
\$bb mount -t tmpfs tmpfs /tmp
exec </dev/ttyS0 >/dev/ttyS0 2>&1
for m in \$(\$bb cat /lib/modules/ORDER); do
  \$bb insmod /lib/modules/\$m.ko || echo "init: insmod \$m failed"
done
# The NIC and the disk appear when their drivers probe: wait (bounded).
i=0
while [ \$i -lt 50 ] && ! { [ -e /sys/class/net/eth0 ] && [ -b /dev/vda ]; }; do
  \$bb sleep 1; i=\$((i + 1))
done
echo "PREBOOT-FLOW-START $nonce"
/preboot-client --interface eth0 --disk /dev/vda --no-boot-file --console \\
  --server-key @/etc/preboot/server.key --handover kexec --work-dir /tmp/env \\
  --kexec-append "console=ttyS0 panic=-1 nonce=$nonce" --step-limit 40
echo "PREBOOT-FLOW-DONE $nonce rc=\$?"
\$bb poweroff -f
EOF
fi
chmod +x "$out/initrd/init"
(cd "$out/initrd" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) \
  >"$expect/initrd.img" || setup_fail "initrd"
cmdline="console=ttyS0 panic=-1"
cp "$cache/vmlinuz" "$expect/"
# The BIOS files are in every tree their package is installed for (the
# UEFI wrong-arch fault serves pxelinux.0).
if [[ -f "$cache/pxelinux.0" && -f "$cache/ldlinux.c32" ]]; then
  cp "$cache/pxelinux.0" "$cache/ldlinux.c32" "$expect/"
fi
cat >"$expect/pxelinux.cfg/default" <<EOF
DEFAULT preboot
PROMPT 0
TIMEOUT 1
LABEL preboot
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND $cmdline
EOF
# Unified kernel image: the systemd-boot stub with the kernel, the initrd
# and the command line as PE sections (stub image ends below 0x20000).
# Built whenever the stub is installed (the BIOS wrong-arch fault would
# serve it); a BIOS boot without systemd-boot-efi goes without it.
printf '%s' "$cmdline" >"$out/cmdline.txt"
printf 'ID=preboot\nPRETTY_NAME="preboot firmware test"\n' >"$out/os-release"
[[ ! -f "$cache/linuxx64.efi.stub" ]] || objcopy \
  --add-section .osrel="$out/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$out/cmdline.txt" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$cache/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$expect/initrd.img" --change-section-vma .initrd=0x3000000 \
  "$cache/linuxx64.efi.stub" "$expect/preboot-x64.efi" || setup_fail "objcopy (unified kernel image)"
if [[ "$flow" == restore ]]; then
  # The imaging environment the policy names: the same kernel, and an
  # initrd whose init says which tasks its command line carries.
  mkdir -p "$expect/imaging" "$out/envrd/bin" "$out/envrd/dev" "$out/envrd/proc"
  cp "$cache/vmlinuz" "$expect/imaging/vmlinuz"
  cp "$cache/busybox" "$out/envrd/bin/busybox"
  ln -sf busybox "$out/envrd/bin/sh"
  cat >"$out/envrd/init" <<EOF
#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t proc proc /proc
tasks="" cn=""
for w in \$(/bin/busybox cat /proc/cmdline); do
  case "\$w" in
    preboot.tasks=*) tasks="\${w#preboot.tasks=}" ;;
    nonce=*) cn="\${w#nonce=}" ;;
  esac
done
echo "PREBOOT-IMAGING-OK $nonce tasks=\$tasks cmdline-nonce=\$cn" >/dev/ttyS0
/bin/busybox poweroff -f
EOF
  chmod +x "$out/envrd/init"
  (cd "$out/envrd" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) \
    >"$expect/imaging/initrd.img" || setup_fail "imaging initrd"
fi
cp -r "$expect" "$root"

if [[ "$firmware" == bios ]]; then
  bootfile=pxelinux.0 other_bootfile=preboot-x64.efi faulty=vmlinuz
else
  bootfile=preboot-x64.efi other_bootfile=pxelinux.0 faulty=preboot-x64.efi
fi
bios_file=pxelinux.0 uefi_file=preboot-x64.efi
case "$fault" in
  truncate)
    size=$(stat -c %s "$root/$faulty")
    truncate -s $((size / 2)) "$root/$faulty" ;;
  wrong)
    # Flip the bits of one byte in the middle of the file.
    size=$(stat -c %s "$root/$faulty")
    off=$((size / 2))
    b=$(xxd -s "$off" -l 1 -p "$root/$faulty")
    printf '%02x' $((0x$b ^ 0xff)) | xxd -r -p | dd of="$root/$faulty" bs=1 seek="$off" conv=notrunc status=none ;;
  wrong-arch)
    bios_file=preboot-x64.efi uefi_file=pxelinux.0 ;;
esac

# ------------------------------------------------------------------ network
ns="pbfw$$"
dns="pbfw$$d"
net=192.168.77
server_ip=$net.1
udhcpd_ip=$net.2
mac="52:54:00:7e:57:$(printf '%02x' $((RANDOM % 256)))"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  ip netns del "$dns" 2>/dev/null
  if [[ $keep -eq 0 ]]; then rm -rf "$out/initrd" "$out/envrd" "$out/root" "$out/disk.img"; fi
}
trap cleanup EXIT

ip netns add "$ns" || setup_fail "ip netns add"
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge stp_state 0 forward_delay 0 || setup_fail "bridge"
ip -n "$ns" addr add "$server_ip/24" dev br0
ip -n "$ns" link set br0 up
ip -n "$ns" tuntap add dev tap0 mode tap || setup_fail "tap"
ip -n "$ns" link set tap0 master br0
ip -n "$ns" link set tap0 up
if [[ "$mode" == proxy ]]; then
  # The third-party DHCP server, in its own namespace, on the same bridge.
  ip netns add "$dns" || setup_fail "ip netns add"
  ip -n "$dns" link set lo up
  ip -n "$ns" link add veth0 type veth peer name eth0 netns "$dns" || setup_fail "veth"
  ip -n "$ns" link set veth0 master br0
  ip -n "$ns" link set veth0 up
  ip -n "$dns" addr add "$udhcpd_ip/24" dev eth0
  ip -n "$dns" link set eth0 up
fi

# ------------------------------------------------------------------ capture
# A 64 MiB kernel buffer (-B): with the default 2 MiB, a loaded host
# dropped packets of a TFTP window burst (the check below says so).
ip netns exec "$ns" dumpcap -q -B 64 -i br0 -w "$out/capture.pcapng" 2>"$out/dumpcap.log" &
pids+=($!)
cap_pid=$!
for _ in $(seq 100); do
  [[ -s "$out/capture.pcapng" ]] && break
  sleep 0.1
done
[[ -s "$out/capture.pcapng" ]] || setup_fail "dumpcap did not start: $(cat "$out/dumpcap.log")"

# ------------------------------------------------------------------ servers
if [[ "$mode" == proxy ]]; then
  cat >"$out/udhcpd.conf" <<EOF
start $net.100
end $net.150
interface eth0
lease_file $out/udhcpd.leases
pidfile $out/udhcpd.pid
opt subnet 255.255.255.0
opt router $udhcpd_ip
opt lease 3600
EOF
  : >"$out/udhcpd.leases"
  ip netns exec "$dns" udhcpd -f "$out/udhcpd.conf" >"$out/udhcpd.log" 2>&1 &
  pids+=($!)
fi

if [[ "$server" == dnsmasq ]]; then
  args=(--keep-in-foreground --conf-file=/dev/null --port=0 --user=root --group=root
    --pid-file= --log-facility=- --log-dhcp --interface=br0 --bind-interfaces
    --dhcp-leasefile="$out/dnsmasq.leases" --enable-tftp --tftp-root="$root"
    --dhcp-match=set:efi64,option:client-arch,7 --dhcp-match=set:efi64,option:client-arch,9)
  if [[ "$mode" == full ]]; then
    args+=(--dhcp-range=$net.100,$net.150,255.255.255.0,1h
      --dhcp-boot=tag:!efi64,"$bios_file" --dhcp-boot=tag:efi64,"$uefi_file")
  else
    args+=(--dhcp-range=$net.0,proxy)
  fi
  if [[ "$mode" == proxy || "$menu" != never ]]; then
    # dnsmasq's pxe-service drops a trailing ".0" from BIOS file names.
    args+=(--pxe-service=x86PC,preboot,"${bios_file%.0}"
      --pxe-service=X86-64_EFI,preboot,"${uefi_file%.0}")
    [[ "$menu" != never ]] && args+=(--pxe-prompt="$prompt",3)
  fi
  ip netns exec "$ns" dnsmasq "${args[@]}" >"$out/server.log" 2>&1 &
  pids+=($!)
else
  case "$menu" in keypress) show=on-key-press ;; *) show="$menu" ;; esac
  # The transaction server's key for this run, and its public half as
  # openssl computes it (PKCS#8 of an X25519 key: a fixed 16-byte prefix,
  # then the 32 private bytes): what sub-option 129 must carry.
  tx_priv="$(head -c 32 /dev/urandom | xxd -p -c 64)"
  # The flow pins the kit's key in its initrd.
  [[ "$flow" != none ]] && tx_priv="$SERVER_PRIVATE"
  (umask 077 && printf '%s\n' "$tx_priv" >"$out/transaction.key")
  tx_pub="$(printf '302e020100300506032b656e04220420%s' "$tx_priv" | xxd -r -p |
    openssl pkey -inform DER -pubout -outform DER | tail -c 32 | xxd -p -c 64)"
  [[ ${#tx_pub} -eq 64 ]] || setup_fail "openssl could not derive the X25519 public key"
  [[ "$flow" == none || "$tx_pub" == "$SERVER_PUBLIC" ]] ||
    setup_fail "kit.env: SERVER_PUBLIC is not the public half of SERVER_PRIVATE (openssl says $tx_pub)"
  # Sub-option 128: the server's address and UDP 4012, big-endian.
  tx_addr="$(printf '%02x' ${server_ip//./ })$(printf '%04x' 4012)"
  # A BIOS boot on a host without systemd-boot-efi has no UEFI image to
  # name (the server refuses a boot file that is not there).
  uefi_line="uefi_x64 = \"$uefi_file\""
  [[ -f "$root/$uefi_file" ]] || uefi_line="# no $uefi_file on this host"
  cat >"$out/preboot.toml" <<EOF
# written by tests/firmware/boot.sh
[server]
mode = "$mode"
server_ip = "$server_ip"
interface = "br0"

[boot]
bios = "$bios_file"
$uefi_line

[pxe_prompt]
show = "$show"
prompt = "$prompt"
timeout_secs = 3

[tftp]
root = "$root"

[transaction]
server_key_file = "$out/transaction.key"
EOF
  if [[ "$flow" != none ]]; then
    # The transaction server (protocol v2) and its policy for this VM.
    bound="$WORKSTATION_PUBLIC"
    [[ "$fault" == unbound-key ]] && bound="$SERVER_PUBLIC"
    server_menu='{ mode = "never" }'
    [[ "$flow" == menu ]] && server_menu='{ mode = "on-key-press", hotkey = "f8", wait_ms = 60000 }'
    cat >>"$out/preboot.toml" <<EOF

[transaction.keys]
auto_enrol = false
workstation = [ { mac = "$mac", public = "$bound" } ]

[transaction.store.server]
image_server = "$server_ip"
menu = $server_menu
menu_entry = [
  { kind = "automatic", label = "Automatic $nonce" },
  { kind = "maintenance", label = "Maintenance $nonce" },
  { kind = "boot-local", label = "Local disk $nonce" },
]
environment = { fetch = "tftp", kernel = "imaging/vmlinuz", initrd = "imaging/initrd.img", loader = "" }

[[transaction.store.workstation]]
mac = "$mac"
name = "fw-$nonce"
EOF
    if [[ "$flow" == restore ]]; then
      cat >>"$out/preboot.toml" <<EOF
image_next_boot = true
image = "images/flow-$nonce.img"
EOF
    fi
  fi
  if [[ $mtftp -eq 1 ]]; then
    # MTFTP for the boot files (multicast stays on br0, in the namespace).
    cat >>"$out/preboot.toml" <<EOF

[mtftp]
enabled = true
server_port = 1759
listen_secs = 2
delay_secs = 5

[[mtftp.file]]
file = "$bios_file"
group = "239.77.1.1"
client_port = 3001
EOF
    if [[ -f "$root/$uefi_file" && $(stat -c %s "$root/$uefi_file") -le 33553919 ]]; then
      cat >>"$out/preboot.toml" <<EOF

[[mtftp.file]]
file = "$uefi_file"
group = "239.77.1.2"
client_port = 3002
EOF
    fi
  fi
  if [[ "$mode" == full ]]; then
    cat >>"$out/preboot.toml" <<EOF

[[dhcp.pool]]
subnet = "$net.0/24"
start = "$net.100"
end = "$net.150"
router = "$server_ip"
lease_time_secs = 3600
EOF
  fi
  ip netns exec "$ns" "$server_bin" --config "$out/preboot.toml" >"$out/server.log" 2>&1 &
  pids+=($!)
fi
srv_pid=$!
# Wait until the boot server listens on 67 and 69.
for _ in $(seq 100); do
  if ip netns exec "$ns" ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ':69$' &&
     ip netns exec "$ns" ss -Hlun 2>/dev/null | awk '{print $4}' | grep -q ':67$'; then
    break
  fi
  kill -0 "$srv_pid" 2>/dev/null || setup_fail "server exited: $(tail -n 5 "$out/server.log")"
  sleep 0.1
done

# ------------------------------------------------------------------- guest
if [[ "$accel" == auto ]]; then
  # /dev/kvm may exist without being able to run a guest (nested setups
  # where the vCPU never runs): boot this run's kernel and initrd directly
  # under KVM once, and use KVM only if the marker comes out. The answer is
  # kept in the cache (delete $cache/ACCEL to ask again).
  if [[ ! -s "$cache/ACCEL" ]]; then
    accel=tcg
    if [[ -w /dev/kvm ]]; then
      timeout -s KILL 20 qemu-system-x86_64 -accel kvm -m 256 -nodefaults -no-user-config \
        -display none -monitor none -serial "file:$out/kvm-probe.log" -no-reboot \
        -kernel "$cache/vmlinuz" -initrd "$expect/initrd.img" -append "$cmdline" \
        >/dev/null 2>&1
      grep -aqF "$marker" "$out/kvm-probe.log" && accel=kvm
    fi
    echo "$accel" >"$cache/ACCEL"
    echo "boot.sh: KVM probe: using $accel" >&2
  fi
  accel="$(cat "$cache/ACCEL")"
fi
serial=(-serial "file:$out/serial.log")
typing=0
[[ "$menu" == always || "$flow" == menu ]] && typing=1
if [[ $typing -eq 1 ]]; then
  # A serial port the harness can also type into: QEMU reads serial.in and
  # writes serial.out (named pipes); cat copies the output to serial.log.
  rm -f "$out/serial.in" "$out/serial.out"
  mkfifo "$out/serial.in" "$out/serial.out" || setup_fail "mkfifo"
  serial=(-chardev "pipe,id=ser0,path=$out/serial" -serial chardev:ser0)
fi
qemu=(qemu-system-x86_64 -accel "$accel" -m 512 -nodefaults -no-user-config
  -display none -vga none -monitor none "${serial[@]}"
  -no-reboot -boot n
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no)
if [[ "$firmware" == bios ]]; then
  # graphics=off makes SeaBIOS copy the screen (iPXE, pxelinux) to serial.
  qemu+=(-machine pc,graphics=off -device e1000,netdev=n0,mac="$mac")
  if [[ "$flow" != none ]]; then
    # The VM's own disk (image-safe data and key record) and identity.
    cp "$flow_kit/disk.img" "$out/disk.img" || setup_fail "copy disk.img"
    qemu+=(-drive file="$out/disk.img",if=virtio,format=raw -smbios type=1,uuid="$vm_uuid")
  fi
else
  cp "$cache/OVMF_VARS.fd" "$out/OVMF_VARS.fd"
  qemu+=(-machine q35,graphics=off
    -drive if=pflash,format=raw,readonly=on,file="$cache/OVMF_CODE.fd"
    -drive if=pflash,format=raw,file="$out/OVMF_VARS.fd"
    -device virtio-net-pci,netdev=n0,mac="$mac",romfile=)
fi
: >"$out/serial.log"
if [[ $typing -eq 1 ]]; then
  cat "$out/serial.out" >>"$out/serial.log" &
  pids+=($!)
fi
typed=0
t0=$(date +%s.%N)
ip netns exec "$ns" timeout -s KILL "$timeout_s" "${qemu[@]}" >"$out/qemu.log" 2>&1 &
qemu_pid=$!
pids+=($qemu_pid)
boot_s=""
gave_up=""
# The firmware says the network boot failed: OVMF moves on to its next boot
# option, SeaBIOS has no device left, the kernel stops.
give_up_re='BdsDxe: failed to (load|start) Boot0001|No bootable device|System halted|Kernel panic'
# The flow's init says when the client gave up.
[[ "$flow" != none ]] && give_up_re+="|PREBOOT-FLOW-DONE $nonce rc=[1-9]"
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [[ -z "$boot_s" ]] && grep -aqF "$marker" "$out/serial.log"; then
    boot_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  fi
  if [[ "$menu" == always && $typed -eq 0 ]] && grep -aqF "$prompt" "$out/serial.log"; then
    sleep 1
    printf '\r' >"$out/serial.in"
    typed=1
    echo "boot.sh: typed Enter at the menu prompt" >&2
  fi
  # F8 (docs/transaction-protocol.md §4.4) once the client waits for it.
  if [[ "$flow" == menu && $typed -eq 0 ]] && grep -aqE "press F8 within" "$out/serial.log"; then
    sleep 1
    printf '\033[19~' >"$out/serial.in"
    typed=1
    echo "boot.sh: typed F8 (ESC [ 19 ~) at the preboot client's prompt" >&2
  fi
  # Then entry 3 (boot the local disk; not the default, which is 1) when
  # the menu asks.
  if [[ "$flow" == menu && $typed -eq 1 ]] && grep -aqE "choose 1-3" "$out/serial.log"; then
    sleep 1
    printf '3' >"$out/serial.in"
    typed=2
    echo "boot.sh: typed 3 at the preboot client's menu" >&2
  fi
  if [[ -z "$boot_s" && -z "$gave_up" ]] && grep -aqE "$give_up_re" "$out/serial.log"; then
    gave_up="$(grep -aoE "$give_up_re" "$out/serial.log" | head -n 1)"
    sleep 2
    kill "$qemu_pid" 2>/dev/null
  fi
  sleep 0.1
done
wait "$qemu_pid"
qemu_rc=$?
if [[ -z "$boot_s" ]] && grep -aqF "$marker" "$out/serial.log"; then
  boot_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
fi
# Let the last frames reach the capture, then stop it (dumpcap flushes on
# SIGINT) and the servers.
sleep 1
kill -INT "$cap_pid" 2>/dev/null
wait "$cap_pid" 2>/dev/null
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done

# ---------------------------------------------------------------- analysis
fails=()
fail() { fails+=("$*"); }

# A capture with holes cannot prove a transfer complete: say so first.
dropped="$(grep -aoE 'received/dropped on interface .*: [0-9]+/[0-9]+' "$out/dumpcap.log" | sed 's|.*/||')"
[[ -z "$dropped" || "$dropped" == 0 ]] ||
  fail "the capture dropped $dropped packets (dumpcap.log): the checks below cannot see everything"

if [[ -n "$boot_s" ]]; then
  :
elif [[ -n "$gave_up" ]]; then
  fail "no marker on the serial console: the firmware gave up (\"$gave_up\")"
elif [[ $qemu_rc -eq 137 ]]; then
  fail "no marker on the serial console within ${timeout_s}s (hard timeout)"
else
  fail "no marker on the serial console (qemu exited with status $qemu_rc)"
fi
if [[ "$menu" != never ]] && ! grep -aqF "$prompt" "$out/serial.log"; then
  fail "menu prompt text not on the serial console"
fi

# DHCP, decoded by tshark (port 4011 as DHCP too).
tshark -r "$out/capture.pcapng" -d udp.port==4011,dhcp -Y dhcp -T fields \
  -E separator='|' -E occurrence=f \
  -e frame.number -e eth.src -e ip.src -e udp.srcport -e ip.dst -e udp.dstport \
  -e dhcp.option.dhcp -e dhcp.option.vendor_class_id \
  -e dhcp.option.client_system_architecture -e dhcp.ip.your -e dhcp.file \
  -e dhcp.option.bootfile_name -e dhcp.hw.mac_addr -e dhcp.id \
  -e dhcp.option.vendor.pxeclient.discovery_control -e frame.time_epoch \
  -e dhcp.client_id.uuid \
  >"$out/dhcp.tsv" 2>"$out/tshark.log" || fail "tshark could not read the capture"

if [[ "$firmware" == bios ]]; then arch_re='^0$'; else arch_re='^(7|9)$'; fi
# Message types: 1 DISCOVER, 2 OFFER, 3 REQUEST, 5 ACK.
dhcp_check="$(awk -F'|' -v mac="$mac" -v srv="$server_ip" -v mode="$mode" \
  -v arch_re="$arch_re" -v want_file="$bootfile" -v flow="$flow" -v uuid="$vm_uuid" '
  { t = $7; src_mac = tolower($2); chaddr = tolower($13); xid = $14 }
  # Only answers to the PXE requests count (after a failed PXE boot OVMF
  # goes on to HTTP boot, with another vendor class).
  src_mac == mac && $8 ~ /^PXEClient/ { pxe_xid[xid] = 1 }
  src_mac != mac && !(xid in pxe_xid) { next }
  # From the guest.
  # Per exchange (xid): first the firmware, then the preboot client.
  src_mac == mac && t == 1 && $8 ~ /^PXEClient/ && $9 ~ arch_re {
    x_disc[xid] = 1
    # Option 97 (RFC 4578 §2.3): the UUID QEMU gives (-smbios type=1),
    # as iPXE and the preboot client read it; compared byte-order blind
    # (SMBIOS stores the first three fields little-endian).
    u = tolower($17)
    if (u == "") no_uuid++
    else if (swapped(u) != uuid && u != uuid) bad_uuid = bad_uuid " " u
  }
  $3 == srv && chaddr == mac && t == 2 && $4 == 67 { x_offer[xid] = 1 }
  src_mac == mac && t == 3 && $6 == 67 { x_req[xid] = 1 }
  $3 != srv && $3 != "0.0.0.0" && chaddr == mac && t == 5 && $4 == 67 { x_ack[xid] = 1 }
  src_mac == mac && t == 3 && $6 == 4011 && $5 == srv { b_req[xid] = 1 }
  $3 == srv && chaddr == mac && t == 5 && $4 == 4011 { b_ack[xid] = 1 }
  src_mac == mac && t == 1 {
    disc++
    if ($8 ~ /^PXEClient/ && $9 ~ arch_re) good_disc++
    else bad_disc = bad_disc " option60=" $8 " option93=" $9
  }
  src_mac == mac && t == 3 && $6 == 67 { req67++ }
  src_mac == mac && t == 3 && $6 == 4011 && $5 == srv { req4011++ }
  # From the boot server to the guest.
  $3 == srv && chaddr == mac && t == 2 && $4 == 67 {
    offer++
    if (mode == "full" && $10 != "0.0.0.0" && $10 != "") offer_addr++
    if (mode == "proxy" && $8 ~ /^PXEClient/) offer_pxe++
    # The proxy OFFER names no file and has no discovery control bit 3
    # ("boot the file in this offer", PXE 2.1 §2.4.5): the file comes from
    # the 4011 ACK (§2.2.1), which every client must ask for.
    dc = tolower($15); low = index("0123456789abcdef", substr(dc, length(dc), 1)) - 1
    if (mode == "proxy" && ($11 != "" || $12 != "")) proxy_offer_file++
    if (mode == "proxy" && dc ~ /^0x/ && low >= 8) proxy_offer_bit3++
    if ($11 != "") files[$11] = 1
    if ($12 != "") files[$12] = 1
  }
  $3 == srv && chaddr == mac && t == 5 && $4 == 67 {
    ack67++
    if ($11 != "") files[$11] = 1
    if ($12 != "") files[$12] = 1
  }
  $3 == srv && chaddr == mac && t == 5 && $4 == 4011 {
    ack4011++
    g = ($11 != "") ? $11 : $12; sub(/^\//, "", g)
    if (g == want_file) ack4011_file++
    if ($11 != "") files[$11] = 1
    if ($12 != "") files[$12] = 1
  }
  # From the third-party DHCP server (proxy mode).
  $3 != srv && $3 != "0.0.0.0" && chaddr == mac && t == 5 && $4 == 67 { other_ack++ }
  function swapped(u,   p) {
    split(u, p, "-")
    return substr(p[1], 7, 2) substr(p[1], 5, 2) substr(p[1], 3, 2) substr(p[1], 1, 2) "-" \
      substr(p[2], 3, 2) substr(p[2], 1, 2) "-" substr(p[3], 3, 2) substr(p[3], 1, 2) "-" p[4] "-" p[5]
  }
  END {
    if (!disc) print "FAIL no DHCPDISCOVER from the guest"
    else if (!good_disc) print "FAIL DISCOVER without PXEClient option 60 / right option 93:" bad_disc
    if (!offer) print "FAIL no OFFER from the boot server"
    if (mode == "full" && offer && !offer_addr) print "FAIL the OFFER (full mode) carries no address"
    if (mode == "proxy" && offer && !offer_pxe) print "FAIL the proxy OFFER carries no option 60 PXEClient"
    if (!req67) print "FAIL no DHCPREQUEST from the guest"
    if (mode == "full" && !ack67) print "FAIL no DHCPACK from the boot server"
    if (mode == "proxy" && !other_ack) print "FAIL no DHCPACK from the third-party DHCP server"
    if (mode == "proxy" && proxy_offer_file) print "FAIL the proxy OFFER names a boot file (it must come from the 4011 ACK)"
    if (mode == "proxy" && proxy_offer_bit3) print "FAIL the proxy OFFER sets discovery control bit 3 (boot the file in this offer)"
    if (mode == "proxy" && !req4011) print "FAIL no REQUEST to the boot server on port 4011"
    if (mode == "proxy" && !ack4011) print "FAIL no ACK from the boot server on port 4011"
    if (mode == "proxy" && ack4011 && !ack4011_file) print "FAIL the 4011 ACK does not name the boot file " want_file
    n = 0
    for (f in files) {
      n++
      g = f; sub(/^\//, "", g)
      if (g != want_file) print "FAIL boot file for the architecture: got " f ", want " want_file
    }
    if (!n) print "FAIL the boot server named no boot file"
    if (flow != "none") {
      # The firmware (iPXE) and then the preboot client each go through
      # DISCOVER/OFFER/REQUEST/ACK and the 4011 REQUEST/ACK.
      dora = 0; bs = 0
      for (x in x_disc) if ((x in x_offer) && (x in x_req) && (x in x_ack)) dora++
      for (x in b_req) if (x in b_ack) bs++
      if (dora < 2) print "FAIL " dora " complete PXE DHCP exchange(s) (DISCOVER with PXEClient and option 93, proxy OFFER, REQUEST, ACK), want 2: the firmware and the preboot client"
      if (bs < 2) print "FAIL " bs " complete 4011 REQUEST/ACK exchange(s), want 2: the firmware and the preboot client"
      if (no_uuid) print "FAIL " no_uuid " DISCOVER(s) without option 97 (client machine UUID)"
      if (bad_uuid != "") print "FAIL option 97 is not the UUID of the VM " uuid ":" bad_uuid
      print "NOTE PXE DHCP exchanges (by xid) " dora ", 4011 exchanges " bs
    }
    print "DHCP discover=" disc " offer=" offer " request=" req67 " ack=" ack67+other_ack " request4011=" req4011+0 " ack4011=" ack4011+0
  }' "$out/dhcp.tsv")"
while IFS= read -r line; do
  case "$line" in
    FAIL\ *) fail "${line#FAIL }" ;;
    DHCP\ *|NOTE\ *) echo "boot.sh: $line" >&2 ;;
  esac
done <<<"$dhcp_check"
# The summary line proves the check ran (an awk error prints nothing).
grep -q '^DHCP discover=' <<<"$dhcp_check" || fail "the DHCP check of the capture did not run"

# Option 43 sub-options 128 and 129 (the transaction server) in the boot
# server's answers to the guest: codes and values of every PXE sub-option,
# as tshark decodes them (one value per sub-option, in order).
if [[ "$server" == ours ]]; then
  tshark -r "$out/capture.pcapng" -d udp.port==4011,dhcp -Y dhcp -T fields \
    -E separator='|' -E occurrence=a \
    -e frame.number -e ip.src -e udp.srcport -e dhcp.option.dhcp -e dhcp.hw.mac_addr \
    -e dhcp.option.vendor.pxeclient.suboption -e dhcp.option.vendor.value \
    >"$out/o43.tsv" 2>>"$out/tshark.log" || fail "tshark could not read the capture"
  tx_check="$(awk -F'|' -v mac="$mac" -v srv="$server_ip" -v mode="$mode" \
    -v want_addr="$tx_addr" -v want_key="$tx_pub" '
    function check(what,    n, m, i, a, k) {
      n = split($6, codes, ","); m = split($7, vals, ",")
      a = ""; k = ""
      for (i = 1; i <= n; i++) {
        if (codes[i] == 128) a = (n == m) ? vals[i] : "?"
        if (codes[i] == 129) k = (n == m) ? vals[i] : "?"
      }
      gsub(":", "", a); gsub(":", "", k)
      seen[what]++
      if (a == want_addr && k == want_key) good[what]++
      else bad[what] = "128=" (a == "" ? "absent" : a) " 129=" (k == "" ? "absent" : k)
    }
    $2 == srv && tolower($5) == mac && $4 == 2 && $3 == 67 { check("OFFER") }
    $2 == srv && tolower($5) == mac && $4 == 5 && $3 == 4011 { check("4011 ACK") }
    $2 == srv && tolower($5) == mac && $4 == 5 && $3 == 67 && mode == "full" { check("ACK") }
    END {
      split(mode == "proxy" ? "OFFER|4011 ACK" : "OFFER|ACK", want, "|")
      for (w in want) {
        x = want[w]
        if (!seen[x]) continue  # the DHCP check above already says it is missing
        if (good[x] != seen[x])
          print "FAIL the " x " does not name the transaction server (want 128=" want_addr " 129=" want_key ", got " bad[x] ")"
        else print "NOTE " x " names the transaction server: 128=" want_addr " 129=" substr(want_key, 1, 16) "... (" seen[x] "x)"
      }
    }' "$out/o43.tsv")"
  while IFS= read -r line; do
    case "$line" in
      FAIL\ *) fail "${line#FAIL }" ;;
      NOTE\ *) echo "boot.sh: $line" >&2 ;;
    esac
  done <<<"$tx_check"
fi

# MTFTP sub-options 1-5 (PXE 2.1 §2.4.5) in the boot server's answers to
# the guest, as tshark decodes them: in the OFFER to a BIOS client, with
# the values configured above; in no answer to a UEFI client.
if [[ $mtftp -eq 1 ]]; then
  tshark -r "$out/capture.pcapng" -d udp.port==4011,dhcp -Y dhcp -T fields \
    -E separator='|' -E occurrence=a \
    -e frame.number -e ip.src -e udp.srcport -e dhcp.option.dhcp -e dhcp.hw.mac_addr \
    -e dhcp.option.vendor.pxeclient.suboption \
    -e dhcp.option.vendor.pxeclient.mtftp_ip -e dhcp.option.vendor.pxeclient.mtftp_client_port \
    -e dhcp.option.vendor.pxeclient.mtftp_server_port -e dhcp.option.vendor.pxeclient.mtftp_timeout \
    -e dhcp.option.vendor.pxeclient.mtftp_delay \
    >"$out/mtftp43.tsv" 2>>"$out/tshark.log" || fail "tshark could not read the capture"
  want_mtftp="239.77.1.1 3001 1759 2 5"
  [[ "$firmware" == uefi ]] && want_mtftp="none"
  mtftp_check="$(awk -F'|' -v mac="$mac" -v srv="$server_ip" -v want="$want_mtftp" '
    $2 == srv && tolower($5) == mac && ($4 == 2 || $4 == 5) && ($3 == 67 || $3 == 4011) {
      what = ($4 == 2 ? "OFFER" : "ACK") "@" $3
      n = split($6, codes, ","); subs = ""
      for (i = 1; i <= n; i++) if (codes[i] >= 1 && codes[i] <= 5) subs = subs codes[i]
      got = (subs == "") ? "none" : $7 " " $8 " " $9 " " $10 " " $11
      answers++
      if (want == "none") {
        if (subs != "") print "FAIL the " what " to the UEFI client carries MTFTP sub-options " subs " (" got ")"
        else clean++
        next
      }
      if (what == "OFFER@67") { offers++; if (subs == "12345" && got == want) good_offers++ }
      if (subs != "" && (subs != "12345" || got != want))
        print "FAIL the " what " carries MTFTP sub-options " subs " = " got ", want 12345 = " want
      if (subs == "12345") with++
    }
    END {
      if (!answers) print "FAIL no answer from the boot server to the guest in the capture"
      else if (want == "none") print "NOTE MTFTP: none of sub-options 1-5 in the " clean+0 " answer(s) to the UEFI client"
      else {
        if (!good_offers) print "FAIL no OFFER to the BIOS client carries MTFTP sub-options 1-5 = " want
        print "NOTE MTFTP: sub-options 1-5 = " want " in " with+0 " of " answers " answer(s) to the BIOS client (" good_offers+0 " of " offers+0 " OFFERs)"
      }
    }' "$out/mtftp43.tsv")"
  while IFS= read -r line; do
    case "$line" in
      FAIL\ *) fail "${line#FAIL }" ;;
      NOTE\ *) echo "boot.sh: $line" >&2 ;;
    esac
  done <<<"$mtftp_check"
  [[ -n "$mtftp_check" ]] || fail "the MTFTP check of the capture did not run"
fi

# TFTP, reassembled from the raw UDP payloads (not from our own parser):
# a transfer is keyed by the client's address and port; DATA blocks are
# kept once each (retransmissions must carry the same bytes); it is
# complete when a block shorter than the block size was acknowledged
# (tests/firmware/tftp.awk).
tshark -r "$out/capture.pcapng" -Y "udp && !(udp.port == 67 || udp.port == 68 || udp.port == 4011 || udp.port == 4012)" \
  -T fields -E separator='|' -e frame.number -e ip.src -e udp.srcport -e ip.dst -e udp.dstport \
  -e udp.payload -e frame.time_epoch >"$out/udp.tsv" 2>>"$out/tshark.log" || fail "tshark could not read the capture"
rm -rf "$out/received"
mkdir -p "$out/received"
awk -F'|' -v dir="$out/received" -v turn="$out/turnaround" -f "$here/tftp.awk" \
  "$out/udp.tsv" >"$out/tftp.tsv"

ntransfers=0
while IFS='|' read -r t f client status file _ _; do
  if [[ "$status" == nodata ]]; then
    case "$file" in
      "server ERROR 1")
        [[ -f "$expect/$f" ]] && fail "TFTP: server said not found for $f, which is in the tree" ;;
      "client ERROR 8") ;; # size probe aborted by the client after the OACK (OVMF)
      *) fail "TFTP: request for $f got no data ($file)" ;;
    esac
    continue
  fi
  ntransfers=$((ntransfers + 1))
  if [[ "$status" != complete ]]; then
    fail "TFTP: transfer of $f to $client $status"
    continue
  fi
  if [[ ! -f "$expect/$f" ]]; then
    fail "TFTP: transferred $f, which is not in the tree"
    continue
  fi
  got=$(sha256sum <"$file" | cut -d' ' -f1)
  want=$(sha256sum <"$expect/$f" | cut -d' ' -f1)
  if [[ "$got" != "$want" ]]; then
    fail "TFTP: $f received $(stat -c %s "$file") bytes sha256 ${got:0:12}, the tree has $(stat -c %s "$expect/$f") bytes sha256 ${want:0:12}"
  fi
done <"$out/tftp.tsv"
[[ $ntransfers -gt 0 ]] || fail "TFTP: no transfer carried data"

# Timeline, in seconds from QEMU's start: every DHCP message of the guest's
# PXE exchange and every TFTP request (start - end), for finding where a
# boot spends its time.
{
  awk -F'|' -v t0="$t0" -v mac="$mac" '
    BEGIN { split("DISCOVER OFFER REQUEST DECLINE ACK NAK RELEASE INFORM", n, " ") }
    tolower($13) == mac {
      printf "%7.2f  DHCP %-8s %s:%s -> %s:%s%s\n", $16 - t0, n[$7], $3, $4, $5, $6, ($11 != "" ? "  file " $11 : "")
    }' "$out/dhcp.tsv"
  awk -F'|' -v t0="$t0" '{
      printf "%7.2f  TFTP %s %s (%s, until %.2f)\n", $6 - t0, $2, ($4 == "nodata" ? $5 : $4), $3, $7 - t0
    }' "$out/tftp.tsv"
  [[ -n "$boot_s" ]] && printf '%7.2f  marker on the serial console\n' "$boot_s"
} | sort -s -n -k1,1 >"$out/timeline.txt"
# The part of the boot the servers decide: from the guest's first DISCOVER
# to the end of its last TFTP transfer (the rest is firmware and kernel).
net_s=$(awk -F'|' -v mac="$mac" '
  FNR == NR { if (tolower($2) == mac && $7 == 1 && (first == "" || $16 < first)) first = $16; next }
  $4 == "complete" && $7 > last { last = $7 }
  END { if (first != "" && last != "") printf "%.2f", last - first; else print "-" }' \
  "$out/dhcp.tsv" "$out/tftp.tsv")
server_ms=$(cat "$out/turnaround" 2>/dev/null || echo -)
# The guest must have read the files that make this boot.
if [[ "$firmware" == bios ]]; then need=(pxelinux.0 ldlinux.c32 pxelinux.cfg/default vmlinuz initrd.img)
else need=(preboot-x64.efi); fi
[[ "$flow" == restore ]] && need+=(imaging/vmlinuz imaging/initrd.img)
for f in "${need[@]}"; do
  awk -F'|' -v f="$f" '$2 == f && $4 == "complete" {ok = 1} END {exit !ok}' "$out/tftp.tsv" ||
    fail "TFTP: no complete transfer of $f"
done
echo "boot.sh: TFTP $(awk -F'|' '{print $2 "=" $4}' "$out/tftp.tsv" | tr '\n' ' ')" >&2

if [[ "$flow" != none ]]; then
  # The transaction exchange in the capture (tests/firmware/transaction.awk).
  tshark -r "$out/capture.pcapng" -Y "udp.port == 4012" -T fields -E separator='|' \
    -e frame.number -e eth.src -e ip.src -e udp.srcport -e ip.dst -e udp.dstport -e udp.payload \
    >"$out/tx.tsv" 2>>"$out/tshark.log" || fail "tshark could not read the capture"
  asked=3
  [[ "$flow" == menu ]] && asked=2
  awk -F'|' -v srv="$server_ip" -v port=4012 -v mac="$mac" -v asked="$asked" -f "$here/transaction.awk" \
    "$out/tx.tsv" >"$out/transaction.txt"
  sessions=()
  while IFS= read -r line; do
    case "$line" in
      FAIL\ *) fail "${line#FAIL }" ;;
      SESSION\ *) sessions+=("${line#SESSION }") ;;
      TRANSACTION\ *) echo "boot.sh: $line" >&2 ;;
    esac
  done <"$out/transaction.txt"
  # The server's key is the kit's; the session the capture shows was
  # established (its first sealed request verified, §3.5) for the VM's
  # address and port. Auto-enrolment is off and only the kit's key is
  # bound to the VM's MAC, so that session speaks with the disk's key.
  grep -qF "pins server key $SERVER_PUBLIC" "$out/server.log" ||
    fail "the server does not say it uses the kit's key $SERVER_PUBLIC"
  established=0
  while read -r dec peer; do
    hexid=$(printf '%016x' "$dec")
    for sp in "${sessions[@]}"; do
      [[ "$sp" == "$hexid $peer" ]] && established=$((established + 1))
    done
  done < <(grep -aoE 'SessionEstablished \{ session_id: [0-9]+, peer: [0-9.]+:[0-9]+' "$out/server.log" |
    sed -E 's/.*session_id: ([0-9]+), peer: (.*)/\1 \2/')
  [[ $established -gt 0 ]] ||
    fail "the server log shows no session established for the session the capture shows (${sessions[*]:-none})"
  grep -aq 'KeyPending' "$out/server.log" && fail "the server saw a key that is not bound (KeyPending)"
  grep -aqF "public key $WORKSTATION_PUBLIC" "$out/serial.log" ||
    fail "the client does not show the kit's workstation key $WORKSTATION_PUBLIC"
  grep -aqF "PREBOOT-FLOW-START $nonce" "$out/serial.log" || fail "the flow initrd's init did not start the client"
  case "$flow" in
    restore)
      id="$(grep -aoE 'PREBOOT-KEXEC tasks=[0-9]+' "$out/serial.log" | head -n 1 | sed 's/.*=//')"
      [[ -n "$id" ]] || fail "the client did not hand over to the imaging environment (no PREBOOT-KEXEC line)"
      grep -aqE "task $id: restore images/flow-$nonce.img from $server_ip" "$out/serial.log" ||
        fail "the client did not get this run's restore task (images/flow-$nonce.img)"
      grep -aqF "PREBOOT-IMAGING-OK $nonce tasks=$id cmdline-nonce=$nonce" "$out/serial.log" ||
        fail "the imaging environment did not see task ${id:-?} and this run's nonce on its command line" ;;
    local)
      grep -aq 'PREBOOT-LOCAL-BOOT' "$out/serial.log" || fail "the client did not say PREBOOT-LOCAL-BOOT"
      grep -aq 'RESULT local-boot' "$out/serial.log" || fail "the client's result is not local-boot" ;;
    menu)
      [[ $typed -ge 1 ]] || fail "the client never asked for F8 (no \"press F8 within\" line)"
      grep -aq 'PREBOOT-MENU (3 entries)' "$out/serial.log" || fail "no PREBOOT-MENU (3 entries) after F8"
      for e in "1. Automatic $nonce" "2. Maintenance $nonce" "3. Local disk $nonce"; do
        grep -aqF "$e" "$out/serial.log" || fail "menu entry \"$e\" not shown"
      done
      # The entry typed on the console (not the default): the local disk.
      grep -aq 'menu choice: BootLocal' "$out/serial.log" || fail "the client did not take entry 3 typed on the console"
      grep -aq 'RESULT local-boot' "$out/serial.log" || fail "the client's result is not local-boot" ;;
  esac
fi

# Keep what explains a failure; a passing run keeps only its logs.
rm -f "$out/udp.tsv" "$out/tx.tsv"
if [[ $keep -eq 0 ]]; then
  rm -rf "$out/received" "$out/expected" "$out/OVMF_VARS.fd"
  [[ ${#fails[@]} -eq 0 ]] && rm -f "$out/capture.pcapng"
fi
if [[ ${#fails[@]} -eq 0 ]]; then
  echo "PASS boot_s=$boot_s net_s=$net_s server_ms=$server_ms" >"$out/result"
  echo "RESULT PASS $case_name boot_s=$boot_s net_s=$net_s server_ms=$server_ms accel=$accel"
  exit 0
fi
msg="$(printf '%s; ' "${fails[@]}")"
echo "FAIL ${msg%; }" >"$out/result"
echo "RESULT FAIL $case_name ${msg%; }"
exit 1
