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

if [[ ! -f "$cache/vmlinuz" ]]; then
  # The current Debian kernel for amd64: the package the meta-package
  # linux-image-amd64 depends on.
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-amd64$/ {print $2; exit}')"
  [[ -n "$pkg" ]] || die "cannot resolve linux-image-amd64 (apt-get update?)"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
    die "apt-get download $pkg failed"
  dpkg -x "$dl"/"$pkg"_*.deb "$dl/x"
  cp "$dl"/x/boot/vmlinuz-* "$cache/vmlinuz.tmp"
  echo "$pkg" >"$cache/KERNEL"
  mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
fi

echo "$cache"
