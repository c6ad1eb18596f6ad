#!/bin/sh
# /init of the L2 guest: load the USB modules, then report the guest's own
# view of its USB devices on the console whenever it changes. The lines are
# parsed by report.go; keep the two in step.
#
# Under nested TCG every fork costs milliseconds, so the poll loop uses only
# shell builtins (read, case, string compare) while nothing changes, and
# forks hexdump only for a device with a serial when the set has changed.
# The set includes each device's configuration and interface count, so a
# device the guest could not configure (SET_CONFIGURATION stalled) is
# reported as such, and again once it is configured.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod "/lib/modules/$m" || echo "USBCTL-L2 error insmod $m"
done </etc/modules.order
read -r up _ </proc/uptime
echo "USBCTL-L2 ready uptime=$up"

# One device: VID:PID:SERIAL@PORT/CFG/NIF, SERIAL hex-encoded (the kernel
# appends a newline to the attribute, which is dropped), or "-" when the
# device has no serial string; CFG/NIF ($2) is its bConfigurationValue ("-"
# while it has none: not configured) and how many interfaces sysfs lists.
# Fails if the device vanished while being read.
dev() {
	d=/sys/bus/usb/devices/$1
	read -r v <"$d/idVendor" || return 1
	read -r p <"$d/idProduct" || return 1
	s=-
	if [ -e "$d/serial" ]; then
		s=$(hexdump -v -e '1/1 "%02x"' "$d/serial") || return 1
		s=${s%0a}
	fi
	echo "$v:$p:$s@$1/$2"
}

prev=none
while :; do
	# The signature: port names (root hubs usbN and interfaces N-P:C.I
	# left out) with their devnum, which changes on re-enumeration, their
	# configuration (empty file while unconfigured) and interface count.
	sig=
	for d in /sys/bus/usb/devices/*; do
		n=${d##*/}
		case $n in
		usb* | *:* | \*) continue ;;
		esac
		read -r dn <"$d/devnum" 2>/dev/null || continue
		c=
		read -r c <"$d/bConfigurationValue" 2>/dev/null
		k=0
		for i in "$d/$n":*; do
			[ -e "$i" ] && k=$((k + 1))
		done
		sig="$sig $n/$dn/${c:--}/$k"
	done
	if [ "$sig" != "$prev" ]; then
		line=
		ok=1
		for e in $sig; do
			r=${e#*/}
			if x=$(dev "${e%%/*}" "${r#*/}" 2>/dev/null); then
				line="$line $x"
			else
				ok=0
			fi
		done
		echo "USBCTL-L2 devices$line"
		prev=$sig
		# A device that vanished mid-read: look again next round.
		[ $ok = 1 ] || prev=none
	fi
	sleep 0.3
done
