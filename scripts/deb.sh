#!/usr/bin/env bash
# Builds a Debian package of usbctl with dpkg-deb alone (no debhelper, no
# debian/ source directory), then shows what is in it:
#
#   scripts/deb.sh              # -> bin/usbctl_VERSION_ARCH.deb
#
# VERSION   default: from `git describe --tags --always` (v1.2.0-3-gabc ->
#           1.2.0+3.gabc; without tags 0.1.0+gitN.gHASH), or 0.1.0 outside git
# OUTDIR    where the .deb goes (default bin/, which make clean removes)
# MAINTAINER  default: $DEBFULLNAME <$DEBEMAIL>, else git's user, else a placeholder
# LINTIAN=0 skip lintian (run when installed; apt-get install lintian)
#
# Binaries are built with the dpkg-buildflags hardening flags (hardening=+all)
# as PIE and stripped; the layout is scripts/install.sh's with PREFIX=/usr (the unit in
# /lib/systemd/system), man pages compressed, the copyright and changelog in
# /usr/share/doc/usbctl. Maintainer scripts (packaging/debian/) enable the unit
# with deb-systemd-helper and start/stop it with deb-systemd-invoke, as
# dh_installsystemd would, after creating the user usbctl with
# systemd-sysusers from /usr/lib/sysusers.d/usbctl.conf, as
# dh_installsysusers would. Depends come from dpkg-shlibdeps when dpkg-dev is
# installed, else "libc6, libvirt0, libudev1".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
OUTDIR=${OUTDIR:-$root/bin}
for tool in dpkg-deb dpkg go; do
	command -v "$tool" >/dev/null || {
		echo "deb.sh: $tool is missing" >&2
		exit 1
	}
done

# Version.
if [[ -z ${VERSION:-} ]]; then
	VERSION=0.1.0
	if desc=$(git describe --tags --always 2>/dev/null); then
		if [[ $desc =~ ^v?([0-9].*)$ ]] && git describe --tags >/dev/null 2>&1; then
			VERSION=$(sed 's/-/+/; s/-/./g' <<<"${BASH_REMATCH[1]}")
		else
			VERSION=0.1.0+git$(git rev-list --count HEAD).g$desc
		fi
	fi
fi
dpkg --validate-version "$VERSION" || {
	echo "deb.sh: $VERSION is not a Debian version; set VERSION=" >&2
	exit 1
}
arch=$(dpkg --print-architecture)
if [[ -z ${MAINTAINER:-} ]]; then
	if [[ -n ${DEBEMAIL:-} ]]; then
		MAINTAINER="${DEBFULLNAME:-usbctl packager} <$DEBEMAIL>"
	elif email=$(git config user.email 2>/dev/null) && [[ -n $email ]]; then
		MAINTAINER="$(git config user.name || echo usbctl packager) <$email>"
	else
		MAINTAINER="usbctl developers <usbctl@localhost>"
	fi
fi
deb=$OUTDIR/usbctl_${VERSION}_$arch.deb
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg

echo "== build usbctl $VERSION ($arch)"
ldflags=""
if command -v dpkg-buildflags >/dev/null; then
	export DEB_BUILD_MAINT_OPTIONS=${DEB_BUILD_MAINT_OPTIONS:-hardening=+all}
	CGO_CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS)
	CGO_CFLAGS=$(dpkg-buildflags --get CFLAGS)
	CGO_LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
	export CGO_CPPFLAGS CGO_CFLAGS CGO_LDFLAGS
	ldflags=$CGO_LDFLAGS
fi
go build -trimpath -buildmode=pie -ldflags="-s -w -linkmode=external -extldflags '$ldflags'" \
	-o "$work/bin/" ./cmd/usbctl ./cmd/usbctld
# What dh_strip removes besides the symbols -s already dropped.
if command -v strip >/dev/null; then
	strip --remove-section=.comment --remove-section=.note "$work/bin/usbctl" "$work/bin/usbctld"
fi

echo "== stage"
BUILDDIR=$work/bin bash scripts/install.sh PREFIX=/usr DESTDIR="$pkg" >/dev/null
doc=$pkg/usr/share/doc/usbctl
install -m 0644 packaging/debian/copyright "$doc/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/usbctl"
{
	printf 'usbctl (%s) unstable; urgency=medium\n\n' "$VERSION"
	printf '  * Package built by scripts/deb.sh from %s.\n\n' "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')"
	printf ' -- %s  %s\n' "$MAINTAINER" "$(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
# Debian compresses man pages, and documents above 4 kB (not the examples).
gzip -9n "$pkg"/usr/share/man/man*/*
find "$doc" -maxdepth 1 -type f -name '*.md' -size +4k -exec gzip -9n {} +

install -d -m 0755 "$pkg/DEBIAN"
install -m 0644 packaging/debian/conffiles "$pkg/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"

depends="libc6, libvirt0, libudev1"
if command -v dpkg-shlibdeps >/dev/null; then
	mkdir -p "$work/shlibs/debian"
	printf 'Source: usbctl\n\nPackage: usbctl\nArchitecture: any\n' >"$work/shlibs/debian/control"
	if line=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$pkg/usr/bin/usbctl" "$pkg/usr/bin/usbctld" 2>/dev/null); then
		depends=${line#shlibs:Depends=}
	fi
fi
for need in libvirt0 libudev1; do
	[[ $depends == *"$need"* ]] || depends="$depends, $need"
done
# postinst runs systemd-sysusers (what dh_installsysusers depends on).
depends="$depends, systemd | systemd-standalone-sysusers | systemd-sysusers"

(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$MAINTAINER|" \
	-e "s|@INSTALLED_SIZE@|$size|" -e "s#@DEPENDS@#$depends#" \
	packaging/debian/control.in >"$pkg/DEBIAN/control"
chmod 0644 "$pkg/DEBIAN/control"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUTDIR"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "built $deb"

echo "== dpkg-deb -I"
dpkg-deb -I "$deb"
echo "== dpkg-deb -c"
dpkg-deb -c "$deb"
if [[ ${LINTIAN:-1} != 0 ]]; then
	if command -v lintian >/dev/null; then
		echo "== lintian"
		lintian --info --display-info --pedantic "$deb" || {
			echo "deb.sh: lintian reports errors" >&2
			exit 1
		}
		echo "lintian: done"
	else
		echo "(lintian is not installed: apt-get install lintian to check the package)"
	fi
fi
