#!/usr/bin/env bash
# make bench (issue "Performance"): the go test benchmarks (reconcile.Plan at
# three sizes, controller overhead), then the sandbox benchmark
# internal/bench (usbctld plug-to-attach against the floor and the old
# virsh way, idle cost, start-up) through scripts/umockdev-exec, and ONE
# table of both: figure, value, target, ratio/ok.
#
#   scripts/bench.sh          # the real run (~4 min: 100 plugs per mode, a 60 s idle window)
#   scripts/bench.sh -smoke   # CI: every benchmark once (~1 min)
#
# Extra arguments go to internal/bench (e.g. -plugs 40 -v -logs DIR).
# Must run as root (umockdev-exec makes namespaces; the sandbox runs
# libvirtd). Exits non-zero if a measurement could not be made; a missed
# target shows as MISSED in the table and does not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}

smoke=0
args=()
for a in "$@"; do
	case "$a" in
	-smoke | --smoke) smoke=1; args+=(-smoke) ;;
	*) args+=("$a") ;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: must run as root (the sandbox runs libvirtd in namespaces)" >&2
	exit 1
fi

start=$(date +%s)
echo "bench: building $BIN/ and the sandbox benchmark" >&2
$GO build -o "$BIN"/ ./cmd/...
$GO build -tags umockdev -o "$BIN"/usbctl-bench ./internal/bench

gobench=$(mktemp /tmp/usbctl-gobench.XXXXXX)
trap 'rm -f "$gobench"' EXIT
benchtime=()
if [ "$smoke" = 1 ]; then
	benchtime=(-benchtime 1x)
fi
echo "bench: go test -run '^\$' -bench . -benchmem ${benchtime[*]} ./reconcile ./controller" >&2
# The go tool's own output goes to stderr as it comes; the table parses it.
set +o pipefail
$GO test -run '^$' -bench . -benchmem "${benchtime[@]}" ./reconcile ./controller 2>&1 | tee "$gobench" >&2
rc=${PIPESTATUS[0]}
set -o pipefail
if [ "$rc" -ne 0 ]; then
	echo "bench: go test benchmarks failed (exit $rc); the table shows it" >&2
fi

echo "bench: sandbox benchmark (scripts/umockdev-exec $BIN/usbctl-bench)" >&2
brc=0
bash scripts/umockdev-exec "$BIN"/usbctl-bench -bin "$BIN" -gobench "$gobench" "${args[@]}" || brc=$?
echo "bench: done in $(($(date +%s) - start)) s" >&2
if [ "$rc" -ne 0 ] || [ "$brc" -ne 0 ]; then
	exit 1
fi
