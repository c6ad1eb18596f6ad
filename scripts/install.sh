#!/usr/bin/env bash
# Installs usbctl, or uninstalls it, from a built source tree.
#
#   make build && sudo scripts/install.sh                 # into /usr/local
#   sudo scripts/install.sh uninstall
#   scripts/install.sh PREFIX=/usr DESTDIR="$pkgdir"      # for a package
#
# Settings, as VAR=value arguments or environment variables:
#   PREFIX      /usr/local    binaries in PREFIX/bin, man pages, completions
#                             and docs under PREFIX/share
#   DESTDIR     (empty)       staging root prepended to every path
#   SYSCONFDIR  /etc          usbctl reads SYSCONFDIR/usbctl (built in: /etc)
#   UNITDIR     /lib/systemd/system when PREFIX=/usr, else PREFIX/lib/systemd/system
#   SYSUSERSDIR /usr/lib/sysusers.d when PREFIX=/usr, else PREFIX/lib/sysusers.d
#   BUILDDIR    bin           where `go build -o bin/ ./cmd/...` put usbctl and usbctld
#
# The libvirt qemu hook goes to SYSCONFDIR/libvirt/hooks/qemu.d/usbctl, where
# libvirtd looks for it; libvirtd finds hooks when it starts, so restart it
# once after the first install (running guests keep running).
#
# The configuration is never overwritten: if SYSCONFDIR/usbctl/usbctl.hcl
# exists and differs, the shipped one is installed next to it as
# usbctl.hcl.new. Uninstall removes the configuration only if it is still the
# shipped one, and conf.d only if it is empty.
#
# The daemon runs as the system user usbctl (in the group libvirt), which
# SYSUSERSDIR/usbctl.conf declares. A live install (no DESTDIR, as root)
# creates it with systemd-sysusers; uninstall leaves it, as Debian leaves
# system users: files it owned may still exist.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
action=install
for arg in "$@"; do
	case $arg in
	install | uninstall) action=$arg ;;
	PREFIX=* | DESTDIR=* | SYSCONFDIR=* | UNITDIR=* | SYSUSERSDIR=* | BUILDDIR=*) export "${arg?}" ;;
	-h | --help)
		sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*)
		echo "install.sh: unknown argument $arg (want install, uninstall or VAR=value; --help)" >&2
		exit 2
		;;
	esac
done

PREFIX=${PREFIX:-/usr/local}
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BUILDDIR=${BUILDDIR:-$root/bin}
if [[ -z ${UNITDIR:-} ]]; then
	if [[ $PREFIX == /usr ]]; then
		UNITDIR=/lib/systemd/system
	else
		UNITDIR=$PREFIX/lib/systemd/system
	fi
fi
if [[ -z ${SYSUSERSDIR:-} ]]; then
	if [[ $PREFIX == /usr ]]; then
		SYSUSERSDIR=/usr/lib/sysusers.d
	else
		SYSUSERSDIR=$PREFIX/lib/sysusers.d
	fi
fi
case $PREFIX in /*) ;; *)
	echo "install.sh: PREFIX must be an absolute path, not $PREFIX" >&2
	exit 2
	;;
esac

bindir=$PREFIX/bin
mandir=$PREFIX/share/man
docdir=$PREFIX/share/doc/usbctl
bashcomp=$PREFIX/share/bash-completion/completions/usbctl
zshcomp=$PREFIX/share/zsh/site-functions/_usbctl
fishcomp=$PREFIX/share/fish/vendor_completions.d/usbctl.fish
confdir=$SYSCONFDIR/usbctl
hookdir=$SYSCONFDIR/libvirt/hooks/qemu.d
D=$DESTDIR

say() { printf '%s\n' "$*"; }
die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

# systemd is managed only on the live system, never in a staging root.
live_systemd() { [[ -z $D && -d /run/systemd/system && $(id -u) == 0 ]] && command -v systemctl >/dev/null; }

do_install() {
	local f
	for f in usbctl usbctld; do
		[[ -x $BUILDDIR/$f ]] || die "$BUILDDIR/$f is missing: build first (make build, or go build -o bin/ ./cmd/...)"
	done
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT

	# Generated from the built CLI: man pages and shell completions.
	"$BUILDDIR/usbctl" man "$tmp/man1" || die "$BUILDDIR/usbctl man failed (a binary built for another machine?)"
	"$BUILDDIR/usbctl" completion bash >"$tmp/usbctl.bash"
	"$BUILDDIR/usbctl" completion zsh >"$tmp/_usbctl"
	"$BUILDDIR/usbctl" completion fish >"$tmp/usbctl.fish"

	# The unit and the metrics drop-in, pointing at the installed daemon.
	for f in usbctld.service usbctld-metrics.conf; do
		sed -e "s|^ExecStart=[^ ]*usbctld|ExecStart=$bindir/usbctld|" \
			-e "s|^# systemd unit for usbctld\. Install as .*|# systemd unit for usbctld, installed as $UNITDIR/usbctld.service.|" \
			"$root/examples/$f" >"$tmp/$f"
		grep -q "^ExecStart=$bindir/usbctld\( \|\$\)" "$tmp/$f" ||
			die "examples/$f has no ExecStart=.../usbctld line to point at $bindir/usbctld"
	done
	# The libvirt hook, calling the installed CLI.
	sed "s|@BINDIR@|$bindir|" "$root/packaging/qemu-hook" >"$tmp/qemu-hook"

	install -d -m 0755 "$D$bindir" "$D$UNITDIR" "$D$SYSUSERSDIR" "$D$mandir/man1" "$D$mandir/man8" \
		"$D${bashcomp%/*}" "$D${zshcomp%/*}" "$D${fishcomp%/*}" "$D$docdir/examples" \
		"$D$confdir" "$D$confdir/conf.d" "$D$hookdir"
	install -m 0755 "$BUILDDIR/usbctl" "$BUILDDIR/usbctld" "$D$bindir/"
	local hook_new=1
	cmp -s "$tmp/qemu-hook" "$D$hookdir/usbctl" && hook_new=0
	install -m 0755 "$tmp/qemu-hook" "$D$hookdir/usbctl"
	install -m 0644 "$tmp/usbctld.service" "$D$UNITDIR/usbctld.service"
	install -m 0644 "$root/packaging/sysusers.conf" "$D$SYSUSERSDIR/usbctl.conf"
	install -m 0644 "$tmp"/man1/*.1 "$D$mandir/man1/"
	install -m 0644 "$root/packaging/usbctld.8" "$D$mandir/man8/usbctld.8"
	install -m 0644 "$tmp/usbctl.bash" "$D$bashcomp"
	install -m 0644 "$tmp/_usbctl" "$D$zshcomp"
	install -m 0644 "$tmp/usbctl.fish" "$D$fishcomp"
	for f in "$root/README.md" "$root"/docs/*.md; do
		if [[ -f $f ]]; then install -m 0644 "$f" "$D$docdir/"; fi
	done
	install -m 0644 "$root"/examples/*.hcl "$tmp/usbctld-metrics.conf" "$D$docdir/examples/"

	local conf=$D$confdir/usbctl.hcl
	if [[ ! -e $conf ]]; then
		install -m 0644 "$root/examples/usbctl.hcl" "$conf"
	elif cmp -s "$root/examples/usbctl.hcl" "$conf"; then
		rm -f "$conf.new"
	else
		install -m 0644 "$root/examples/usbctl.hcl" "$conf.new"
		say "kept $conf (changed); the shipped one is $conf.new"
	fi

	say "installed usbctl: PREFIX=$PREFIX${D:+ DESTDIR=$D}"
	if [[ -z $D && $(id -u) == 0 ]]; then
		if command -v systemd-sysusers >/dev/null; then
			systemd-sysusers "$SYSUSERSDIR/usbctl.conf" || die "systemd-sysusers $SYSUSERSDIR/usbctl.conf failed: the user usbctl is missing"
			# usbctld writes conf.d for usbctl rule and --save (after
			# checking): the directory is its user's; the main config stays
			# root's.
			chown usbctl "$confdir/conf.d"
		else
			say "systemd-sysusers not found: create the system user usbctl, in the groups usbctl and libvirt, before starting usbctld"
		fi
	fi
	if live_systemd; then
		systemctl daemon-reload
		say "start it, now and at boot: systemctl enable --now usbctld"
		local u
		for u in libvirtd virtqemud; do
			if ((hook_new)) && systemctl --quiet is-active "$u.service" 2>/dev/null; then
				say "$u finds hooks when it starts: restart it so that it runs $hookdir/usbctl for saved and migrated guests (systemctl restart $u; running guests keep running)"
			fi
		done
	fi
}

do_uninstall() {
	if live_systemd && systemctl cat usbctld.service >/dev/null 2>&1; then
		systemctl disable --now usbctld.service || true
	fi
	rm -f "$D$bindir/usbctl" "$D$bindir/usbctld" "$D$UNITDIR/usbctld.service" "$D$SYSUSERSDIR/usbctl.conf" \
		"$D$mandir"/man1/usbctl.1 "$D$mandir"/man1/usbctl.1.gz \
		"$D$mandir"/man1/usbctl-*.1 "$D$mandir"/man1/usbctl-*.1.gz \
		"$D$mandir/man8/usbctld.8" "$D$mandir/man8/usbctld.8.gz" \
		"$D$bashcomp" "$D$zshcomp" "$D$fishcomp" "$D$hookdir/usbctl"
	rm -rf "$D$docdir"
	# The hook directories go only if nothing else is in them.
	rmdir "$D$hookdir" "$D${hookdir%/qemu.d}" 2>/dev/null || true

	local conf=$D$confdir/usbctl.hcl
	rm -f "$conf.new"
	if [[ -e $conf ]]; then
		if cmp -s "$root/examples/usbctl.hcl" "$conf"; then
			rm -f "$conf"
		else
			say "kept $conf: it was changed"
		fi
	fi
	if [[ -d $D$confdir/conf.d ]]; then
		rmdir "$D$confdir/conf.d" 2>/dev/null || say "kept $D$confdir/conf.d: it is not empty"
	fi
	if [[ -d $D$confdir ]]; then rmdir "$D$confdir" 2>/dev/null || true; fi

	if live_systemd; then
		systemctl daemon-reload
	fi
	say "uninstalled usbctl: PREFIX=$PREFIX${D:+ DESTDIR=$D}"
	if [[ -z $D ]] && getent passwd usbctl >/dev/null; then
		say "kept the system user usbctl (files it owned may remain; userdel usbctl removes it)"
	fi
}

"do_$action"
