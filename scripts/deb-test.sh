#!/usr/bin/env bash
# Builds the .deb into a temporary directory and checks it: the files a
# system install needs are in it, the unit is where systemd looks, the
# config is a conffile, the maintainer scripts create the user usbctl
# (systemd-sysusers) before they enable the unit the Debian way, the unit as
# unpacked passes scripts/unit-check.sh (systemd-analyze verify silent,
# security exposure at most 2.0, printed), and lintian (installed by make
# deps) has no errors or warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OUTDIR=$out bash scripts/deb.sh >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
deb=$(ls "$out"/*.deb)
list=$(dpkg-deb -c "$deb" | awk '{print $NF}')
fail=0
for f in ./usr/bin/usbctl ./usr/bin/usbctld ./lib/systemd/system/usbctld.service ./etc/usbctl/usbctl.hcl \
	./usr/share/man/man1/usbctl.1.gz ./usr/share/man/man8/usbctld.8.gz \
	./usr/share/bash-completion/completions/usbctl ./usr/share/doc/usbctl/copyright \
	./usr/lib/sysusers.d/usbctl.conf ./usr/share/doc/usbctl/examples/usbctld-metrics.conf \
	./etc/libvirt/hooks/qemu.d/usbctl; do
	grep -qxF "$f" <<<"$list" || { echo "deb-test: $f missing from $deb" >&2; fail=1; }
done
dpkg-deb -f "$deb" Depends | grep -q libvirt0 || { echo "deb-test: Depends lacks libvirt0" >&2; fail=1; }
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -x /etc/usbctl/usbctl.hcl >/dev/null || { echo "deb-test: usbctl.hcl is not a conffile" >&2; fail=1; }
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep deb-systemd-helper >/dev/null || { echo "deb-test: postinst does not enable the unit" >&2; fail=1; }
dpkg-deb -f "$deb" Depends | grep -qF 'systemd | systemd-standalone-sysusers | systemd-sysusers' || { echo "deb-test: Depends lacks systemd-sysusers" >&2; fail=1; }
# The user exists before the unit is started: sysusers comes first.
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst >"$out/postinst"
sysusers_line=$(grep -n '^[[:space:]]*systemd-sysusers .*usbctl.conf' "$out/postinst" | cut -d: -f1 | head -1)
invoke_line=$(grep -n 'deb-systemd-invoke "\$action"' "$out/postinst" | cut -d: -f1 | head -1)
if [[ -z $sysusers_line || -z $invoke_line || $sysusers_line -gt $invoke_line ]]; then
	echo "deb-test: postinst does not run systemd-sysusers usbctl.conf before it starts the unit" >&2
	fail=1
fi
dpkg-deb -x "$deb" "$out/root"
bash scripts/unit-check.sh "$out/root" /usr /lib/systemd/system || fail=1
# The libvirt hook: executable, a conffile, execing the packaged CLI, and
# the package says that libvirtd must be restarted to find it.
grep -q '^-rwxr-xr-x .* \./etc/libvirt/hooks/qemu\.d/usbctl$' <<<"$(dpkg-deb -c "$deb")" || { echo "deb-test: the libvirt hook is missing or not 0755" >&2; fail=1; }
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -x /etc/libvirt/hooks/qemu.d/usbctl >/dev/null || { echo "deb-test: the libvirt hook is not a conffile" >&2; fail=1; }
grep -qx 'exec /usr/bin/usbctl hook -- "$@"' <<<"$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/libvirt/hooks/qemu.d/usbctl)" || { echo "deb-test: the libvirt hook does not exec /usr/bin/usbctl" >&2; fail=1; }
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep 'systemctl restart \$d' >/dev/null || { echo "deb-test: postinst does not say to restart libvirtd" >&2; fail=1; }
grep -q '^lintian: done' "$out/build.log" || { echo "deb-test: lintian did not run clean:" >&2; sed -n '/== lintian/,$p' "$out/build.log" >&2; fail=1; }
if grep -E '^[EW]: ' "$out/build.log"; then echo "deb-test: lintian errors or warnings" >&2; fail=1; fi
[ $fail -eq 0 ] && echo "deb-test: $(basename "$deb") OK ($(wc -l <<<"$list") entries)"
exit $fail
