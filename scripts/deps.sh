#!/usr/bin/env bash
# Installs the Debian packages usbctl's build, tests and demo need, if any is
# missing. Idempotent and quick when everything is there.
set -euo pipefail
pkgs=(gcc libc6-dev pkg-config libvirt-dev libudev-dev
      libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
      umockdev libumockdev-dev util-linux procps
      passwd dpkg-dev lintian groff-base
      # libvirtd as Debian ships it for the unprivileged daemon's tests: the
      # group libvirt and polkit's 60-libvirt.rules (libvirt-daemon-system),
      # a system bus and polkitd of the sandbox's own; ip for loopback in
      # the tests' network namespace; systemd-analyze for the unit's test.
      libvirt-daemon-system dbus-daemon dbus-bin polkitd iproute2 systemd
      # The shells whose completion of usbctl is tested for real.
      bash-completion fish zsh
      # The real-kernel test host (internal/testhost): Debian's kernel and
      # modules, busybox for its initramfs, USB/IP inside it; fuser, which
      # status names to find a program holding a device.
      linux-image-amd64 busybox-static usbip psmisc)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
