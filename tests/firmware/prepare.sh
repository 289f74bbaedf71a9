#!/usr/bin/env bash
# Prepares the boot files of the real-firmware suite in a cache directory
# (default target/firmware/cache), once: later runs reuse it.
#
#   tests/firmware/prepare.sh [CACHE_DIR]
#
# What it gathers (all from Debian packages already installed, except the
# kernel, which is downloaded with `apt-get download` and unpacked with
# `dpkg -x`, never installed):
#   pxelinux.0      package pxelinux       (BIOS network boot program)
#   ldlinux.c32     package syslinux-common (pxelinux's second stage)
#   vmlinuz         package linux-image-<version>-amd64
#   modules/        the same package's e1000, virtio (pci, blk, net) modules
#                   and their dependencies, for the preboot-flow initrd
#                   (Debian builds them as modules), with modules/ORDER, the
#                   load order
#   busybox         package busybox-static (the initrd's only program)
#   linuxx64.efi.stub package systemd-boot-efi (the UEFI unified-image stub)
#   OVMF_CODE.fd, OVMF_VARS.fd  package ovmf
# busybox and the kernel are needed by every boot; the firmware-specific
# files (pxelinux and ldlinux for BIOS, the stub and OVMF for UEFI) are
# copied when their package is installed, and boot.sh checks that the files
# of its firmware are there: a BIOS boot does not need systemd-boot-efi.
# Only the kernel download is done once; the copies are refreshed each run.
# The per-run files (initrd with the run's nonce, pxelinux.cfg/default, the
# unified kernel image) are built by boot.sh from these.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${1:-$repo/target/firmware/cache}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

die() { echo "prepare.sh: $*" >&2; exit 1; }

need_file() { [[ -f "$1" ]] || die "missing $1 (install Debian package $2)"; }

need_file /bin/busybox busybox-static
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
  die "/bin/busybox must be static (install busybox-static)"

# Copy, then rename: a boot running meanwhile keeps reading whole files.
put() { cp "$1" "$cache/$2.tmp$$" && mv -f "$cache/$2.tmp$$" "$cache/$2"; }
# Copy if installed (boot.sh requires the files of its firmware).
put_if() { if [[ -f "$1" ]]; then put "$1" "$2"; else rm -f "$cache/$2"; fi; }
put /bin/busybox busybox
put_if /usr/lib/PXELINUX/pxelinux.0 pxelinux.0
put_if /usr/lib/syslinux/modules/bios/ldlinux.c32 ldlinux.c32
put_if /usr/lib/systemd/boot/efi/linuxx64.efi.stub linuxx64.efi.stub
put_if /usr/share/OVMF/OVMF_CODE_4M.fd OVMF_CODE.fd
put_if /usr/share/OVMF/OVMF_VARS_4M.fd OVMF_VARS.fd

# The modules the preboot-flow initrd loads (tests/firmware/boot.sh
# --flow), in load order: each one's dependencies (its .modinfo
# "depends=") come before it, checked below.
flow_modules=(failover net_failover e1000 virtio_ring virtio virtio_pci_modern_dev
  virtio_pci_legacy_dev virtio_pci virtio_blk virtio_net)

if [[ ! -f "$cache/vmlinuz" || ! -f "$cache/modules/ORDER" ]]; then
  # The current Debian kernel for amd64: the package the meta-package
  # linux-image-amd64 depends on (the one already cached, if the kernel is
  # there and only the modules are missing, so that both match).
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-amd64$/ {print $2; exit}')"
  if [[ -f "$cache/vmlinuz" && -s "$cache/KERNEL" ]]; then pkg="$(cat "$cache/KERNEL")"; fi
  [[ -n "$pkg" ]] || die "cannot resolve linux-image-amd64 (apt-get update?)"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
    die "apt-get download $pkg failed"
  dpkg -x "$dl"/"$pkg"_*.deb "$dl/x"
  rm -rf "$cache/modules.tmp"
  mkdir -p "$cache/modules.tmp"
  for m in "${flow_modules[@]}"; do
    f="$(find "$dl"/x/lib/modules -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)"
    [[ -n "$f" ]] || die "$pkg has no module $m"
    if [[ "$f" == *.xz ]]; then
      xz -dc "$f" >"$cache/modules.tmp/$m.ko" || die "xz -d $f"
    else
      cp "$f" "$cache/modules.tmp/$m.ko"
    fi
    deps="$(grep -ao 'depends=[^[:cntrl:]]*' "$cache/modules.tmp/$m.ko" | head -n 1)"
    deps="${deps#depends=}"
    for d in ${deps//,/ }; do
      grep -qx "$d" "$cache/modules.tmp/ORDER" 2>/dev/null ||
        die "module $m needs $d, which is not loaded before it (flow_modules)"
    done
    echo "$m" >>"$cache/modules.tmp/ORDER"
  done
  cp "$dl"/x/boot/vmlinuz-* "$cache/vmlinuz.tmp"
  echo "$pkg" >"$cache/KERNEL"
  mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
  rm -rf "$cache/modules"
  mv "$cache/modules.tmp" "$cache/modules"
fi

echo "$cache"
