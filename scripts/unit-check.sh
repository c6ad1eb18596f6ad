#!/usr/bin/env bash
# Checks usbctld.service as systemd reads it, in an installed or unpacked
# tree (make install DESTDIR, or an unpacked .deb):
#
#   scripts/unit-check.sh ROOT PREFIX UNITDIR      # e.g. /tmp/x /usr /lib/systemd/system
#
# - systemd-analyze verify has nothing to say about it: an unknown or
#   misspelt directive is only a warning to systemd, so any output fails;
# - systemd-analyze security --offline rates its overall exposure at most
#   2.0 (MAX=), printed; with the metrics drop-in from the doc examples too,
#   which must open Internet sockets to localhost only.
# Exits 1 on any failure.
set -euo pipefail
d=${1:?ROOT} prefix=${2:?PREFIX} unitdir=${3:?UNITDIR}
max=${MAX:-2.0}
unit=$d$unitdir/usbctld.service
dropin=$d$prefix/share/doc/usbctl/examples/usbctld-metrics.conf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}
figure() { sed -n 's/.*Overall exposure level for usbctld.service: \([0-9.]*\).*/\1/p' <<<"$1"; }
# systemd-analyze's threshold is the exposure times ten.
threshold=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 }')

# verify checks that ExecStart exists on this machine: point it at the
# staged binary.
sed "s|^ExecStart=$prefix/bin/usbctld|ExecStart=$d$prefix/bin/usbctld|" "$unit" >"$work/usbctld.service"
out=$(systemd-analyze verify --man=no "$work/usbctld.service" 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify warns about ${unit#"$d"}: $out"

out=$(systemd-analyze security --offline=true --threshold="$threshold" --root="$d" "$unit" 2>&1) ||
	fail "systemd-analyze security rates ${unit#"$d"} above $max: $(tail -1 <<<"$out")"
f=$(figure "$out")
[[ -n $f ]] || fail "systemd-analyze security printed no overall exposure: $out"
echo "systemd-analyze security --offline=true ${unit#"$d"}: exposure $f (at most $max)"

install -D -m 0644 "$dropin" "$work/root/etc/systemd/system/usbctld.service.d/metrics.conf"
install -D -m 0644 "$unit" "$work/root$unitdir/usbctld.service"
out=$(systemd-analyze security --offline=true --threshold="$threshold" --root="$work/root" "$work/root$unitdir/usbctld.service" 2>&1) ||
	fail "systemd-analyze security rates the unit with the metrics drop-in above $max: $(tail -1 <<<"$out")"
grep -qF '✗ RestrictAddressFamilies=~AF_(INET|INET6)' <<<"$out" || fail "the metrics drop-in did not open AF_INET: $(grep -F 'AF_(INET' <<<"$out")"
grep -qF 'allow list with only localhost entries' <<<"$out" || fail "the metrics drop-in does not limit IP to localhost: $(grep -F 'IPAddressDeny' <<<"$out")"
echo "  with the metrics drop-in (usbctld-metrics.conf): exposure $(figure "$out") (at most $max)"
((failures == 0))
