#!/usr/bin/env bash
# Tests scripts/install.sh: builds usbctl, installs it into temporary DESTDIRs
# (PREFIX=/usr/local and PREFIX=/usr), checks the tree — every file, its mode,
# the unit's ExecStart, the man pages and completions, `usbctl check` on the
# installed default config, a changed config surviving a reinstall — then
# uninstalls and checks that nothing is left. The unit is checked as systemd
# reads it: systemd-analyze verify has nothing to say, and systemd-analyze
# security rates it at most 2.0 (the figure is printed); the sysusers.d file
# creates the user usbctl in the group libvirt. Exits 1 on any failure.
#
#   scripts/install-test.sh            # KEEP=1 keeps the temporary tree
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
work=$(mktemp -d)
if [[ -n ${KEEP:-} ]]; then
	echo "install-test: keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

# mode PATH WANT: the file exists with permissions WANT (octal).
mode() {
	if [[ ! -e $1 && ! -L $1 ]]; then
		fail "missing ${1#"$work"}"
		return
	fi
	local got
	got=$(stat -c %a "$1")
	[[ $got == "$2" ]] || fail "${1#"$work"}: mode $got, want $2"
}

echo "== build"
go build -o "$work/bin/" ./cmd/usbctl ./cmd/usbctld
install=(env BUILDDIR="$work/bin" bash "$root/scripts/install.sh")

# Without binaries, install refuses.
if env BUILDDIR="$work/nothing" bash scripts/install.sh DESTDIR="$work/none" >/dev/null 2>&1; then
	fail "install.sh succeeded without built binaries"
elif [[ -e $work/none ]]; then
	fail "install.sh created files without built binaries"
else
	ok "install.sh refuses to run without built binaries"
fi

# check_tree DEST PREFIX UNITDIR: everything install.sh promises.
check_tree() {
	local d=$1 prefix=$2 unitdir=$3 f
	local man=$d$prefix/share/man doc=$d$prefix/share/doc/usbctl
	mode "$d$prefix/bin/usbctl" 755
	mode "$d$prefix/bin/usbctld" 755
	mode "$d$unitdir/usbctld.service" 644
	mode "$d/etc/usbctl" 755
	mode "$d/etc/usbctl/usbctl.hcl" 644
	mode "$d/etc/usbctl/conf.d" 755
	for f in usbctl usbctl-check usbctl-plan usbctl-status usbctl-reload usbctl-devices usbctl-snapshot usbctl-import usbctl-completion \
		usbctl-attach usbctl-detach usbctl-move usbctl-release usbctl-pending usbctl-rule usbctl-rule-add usbctl-rule-remove usbctl-events usbctl-agent; do
		mode "$man/man1/$f.1" 644
	done
	[[ ! -e $man/man1/usbctl-man.1 ]] || fail "the hidden man command got a man page"
	mode "$man/man8/usbctld.8" 644
	# The libvirt qemu hook, where libvirtd looks, calling the installed CLI.
	local hook=$d/etc/libvirt/hooks/qemu.d/usbctl
	mode "$hook" 755
	grep -qx "exec $prefix/bin/usbctl hook -- \"\$@\"" "$hook" || fail "the hook does not exec $prefix/bin/usbctl hook: $(tail -1 "$hook")"
	sh -n "$hook" || fail "the hook is not valid sh"
	# The installed CLI passes every operation but restore and migrate
	# through, silently, whatever is on stdin.
	local hout
	hout=$(echo '<domain/>' | "$d$prefix/bin/usbctl" hook --config "$d/etc/usbctl/usbctl.hcl" -- g1 prepare begin - 2>&1) &&
		[[ -z $hout ]] || fail "usbctl hook for prepare: $hout"
	mode "$d$prefix/share/bash-completion/completions/usbctl" 644
	mode "$d$prefix/share/zsh/site-functions/_usbctl" 644
	mode "$d$prefix/share/fish/vendor_completions.d/usbctl.fish" 644
	mode "$doc/config.md" 644
	[[ ! -f README.md ]] || mode "$doc/README.md" 644
	mode "$doc/examples/usbctl.hcl" 644
	cmp -s examples/usbctl.hcl "$d/etc/usbctl/usbctl.hcl" || fail "/etc/usbctl/usbctl.hcl is not examples/usbctl.hcl"

	# Nothing outside PREFIX, /etc/usbctl and the unit directory; files 644
	# except the two binaries, directories 755, no stray .new.
	while IFS= read -r -d '' f; do
		local rel=${f#"$d"}
		case $rel in
		"$prefix"/* | /etc/usbctl | /etc/usbctl/* | "$unitdir"/* | /etc/libvirt/hooks/qemu.d/usbctl) ;;
		*)
			# A parent of one of those.
			[[ -d $f && ($prefix/ == "$rel"/* || $unitdir/ == "$rel"/* || /etc/usbctl/ == "$rel"/* || /etc/libvirt/hooks/qemu.d/ == "$rel"/*) ]] ||
				fail "unexpected path $rel"
			;;
		esac
		if [[ -L $f ]]; then
			fail "unexpected symlink $rel"
		elif [[ -d $f ]]; then
			[[ $(stat -c %a "$f") == 755 ]] || fail "directory $rel: mode $(stat -c %a "$f"), want 755"
		elif [[ $rel != "$prefix/bin/usbctl" && $rel != "$prefix/bin/usbctld" && $rel != /etc/libvirt/hooks/qemu.d/usbctl ]]; then
			[[ $(stat -c %a "$f") == 644 ]] || fail "$rel: mode $(stat -c %a "$f"), want 644"
		fi
	done < <(find "$d" -mindepth 1 -print0)
	[[ ! -e $d/etc/usbctl/usbctl.hcl.new ]] || fail "usbctl.hcl.new installed next to an unchanged config"

	# The unit starts the installed daemon, and only that changed.
	local exec
	exec=$(grep '^ExecStart=' "$d$unitdir/usbctld.service" || true)
	[[ $exec == "ExecStart=$prefix/bin/usbctld" ]] || fail "unit: $exec, want ExecStart=$prefix/bin/usbctld"
	diff <(grep -v '^ExecStart=\|^# systemd unit' examples/usbctld.service) \
		<(grep -v '^ExecStart=\|^# systemd unit' "$d$unitdir/usbctld.service") >/dev/null ||
		fail "the installed unit differs from examples/usbctld.service beyond ExecStart"

	# The metrics drop-in starts the installed daemon too.
	mode "$doc/examples/usbctld-metrics.conf" 644
	exec=$(grep '^ExecStart=.' "$doc/examples/usbctld-metrics.conf" || true)
	[[ $exec == "ExecStart=$prefix/bin/usbctld --metrics-listen "* ]] || fail "metrics drop-in: $exec, want ExecStart=$prefix/bin/usbctld --metrics-listen ..."

	# The user the unit runs as, and the unit itself as systemd reads it.
	mode "$d$prefix/lib/sysusers.d/usbctl.conf" 644
	check_sysusers "$d$prefix/lib/sysusers.d/usbctl.conf"
	out=$(bash scripts/unit-check.sh "$d" "$prefix" "$unitdir" 2>&1) || fail "$out"
	echo "$out"

	# The installed CLI accepts the installed default config.
	local out
	if out=$("$d$prefix/bin/usbctl" check "$d/etc/usbctl/usbctl.hcl" "$d/etc/usbctl/conf.d" 2>&1); then
		# The default has no domain on purpose; check says so, and only that.
		[[ $out == *"Warning: No domain configured"* && $out == *": OK, 0 domains, 0 device rules, 0 excludes, 1 warning" ]] ||
			fail "usbctl check on the default config: $out"
	else
		fail "usbctl check on the installed default config failed: $out"
	fi

	# Man pages render without groff warnings; completions load.
	if command -v groff >/dev/null; then
		for f in "$man"/man1/*.1 "$man"/man8/usbctld.8; do
			out=$(groff -man -Tutf8 -ww -z "$f" 2>&1) || true
			[[ -z $out ]] || fail "groff warns about ${f#"$d"}: $out"
		done
	fi
	out=$(bash -c 'source "$1" && complete -p usbctl' _ "$d$prefix/share/bash-completion/completions/usbctl" 2>&1) ||
		fail "bash completion does not load: $out"
	head -1 "$d$prefix/share/zsh/site-functions/_usbctl" | grep -q '^#compdef usbctl' || fail "zsh completion lacks #compdef usbctl"
	grep -q 'complete -c usbctl' "$d$prefix/share/fish/vendor_completions.d/usbctl.fish" || fail "fish completion lacks complete -c usbctl"
}

# check_sysusers FILE: systemd-sysusers, given FILE on an empty root and on
# one where libvirt-daemon-system made the group libvirt already, creates
# the system user usbctl with its own group and puts it in libvirt.
check_sysusers() {
	local r out
	for seed in "" "libvirt:x:110:"; do
		r=$(mktemp -d "$work/sysroot.XXXXXX")
		mkdir -p "$r/etc"
		: >"$r/etc/passwd"
		printf '%s' "${seed:+$seed$'\n'}" >"$r/etc/group"
		if ! out=$(systemd-sysusers --root="$r" "$1" 2>&1); then
			fail "systemd-sysusers ${1#"$work"}: $out"
			continue
		fi
		local pw uid gid
		pw=$(grep '^usbctl:' "$r/etc/passwd" || true)
		IFS=: read -r _ _ uid gid _ _ _ <<<"$pw"
		[[ -n $pw && $uid -lt 1000 && $pw == *:/usr/sbin/nologin ]] || fail "sysusers: user usbctl is not a system user without a shell: '$pw'"
		grep -q "^usbctl:x:$gid:" "$r/etc/group" || fail "sysusers: the group of usbctl is not usbctl ($gid): $(cat "$r/etc/group")"
		grep -Eq '^libvirt:x:[0-9]+:(.*,)?usbctl(,|$)' "$r/etc/group" || fail "sysusers: usbctl is not in libvirt: $(cat "$r/etc/group")"
		[[ -z $seed ]] || grep -qx 'libvirt:x:110:usbctl' "$r/etc/group" || fail "sysusers: an existing libvirt group was not kept: $(cat "$r/etc/group")"
	done
}

# remaining DEST: every non-directory left under DEST.
remaining() { find "$1" -mindepth 1 ! -type d -printf '/%P\n' | sort; }

echo "== PREFIX=/usr/local"
d=$work/local
"${install[@]}" DESTDIR="$d" >/dev/null
check_tree "$d" /usr/local /usr/local/lib/systemd/system
ok "install PREFIX=/usr/local"

# Installing again changes nothing.
before=$(cd "$d" && find . -type f -exec md5sum {} + | sort)
"${install[@]}" DESTDIR="$d" >/dev/null
after=$(cd "$d" && find . -type f -exec md5sum {} + | sort)
[[ $before == "$after" ]] || fail "a second install changed the tree"
ok "reinstall is idempotent"

# A changed config survives a reinstall; the shipped one goes next to it.
echo '# changed by the admin' >>"$d/etc/usbctl/usbctl.hcl"
cp "$d/etc/usbctl/usbctl.hcl" "$work/changed.hcl"
"$d/usr/local/bin/usbctl" import internal/oldconf/testdata/whitelist.conf >"$d/etc/usbctl/conf.d/win11.hcl" 2>/dev/null
"${install[@]}" DESTDIR="$d" >/dev/null
cmp -s "$work/changed.hcl" "$d/etc/usbctl/usbctl.hcl" || fail "reinstall overwrote a changed usbctl.hcl"
cmp -s examples/usbctl.hcl "$d/etc/usbctl/usbctl.hcl.new" || fail "reinstall did not put the shipped config in usbctl.hcl.new"
out=$("$d/usr/local/bin/usbctl" check "$d/etc/usbctl/usbctl.hcl" "$d/etc/usbctl/conf.d" 2>&1) || true
[[ $out == *": OK, 1 domain, 4 device rules, 0 excludes" ]] || fail "usbctl check with an imported conf.d file: $out"
ok "a changed config is kept; usbctl import output checks OK"

# Uninstall keeps what the admin changed or added, and only that.
"${install[@]}" uninstall DESTDIR="$d" >/dev/null
left=$(remaining "$d")
want=$'/etc/usbctl/conf.d/win11.hcl\n/etc/usbctl/usbctl.hcl'
[[ $left == "$want" ]] || fail "after uninstall with a changed config, left: $left; want: $want"
ok "uninstall keeps the changed config and conf.d files"

echo "== PREFIX=/usr"
d=$work/usr
"${install[@]}" PREFIX=/usr DESTDIR="$d" >/dev/null
check_tree "$d" /usr /lib/systemd/system
ok "install PREFIX=/usr (unit in /lib/systemd/system)"
"${install[@]}" uninstall PREFIX=/usr DESTDIR="$d" >/dev/null
left=$(remaining "$d")
[[ -z $left ]] || fail "uninstall left files behind: $left"
[[ ! -e $d/etc/usbctl ]] || fail "uninstall left /etc/usbctl behind"
ok "uninstall PREFIX=/usr leaves nothing"

if ((failures > 0)); then
	echo "install-test: $failures failures" >&2
	exit 1
fi
echo "install-test: all checks passed"
