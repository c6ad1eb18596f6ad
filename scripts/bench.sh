#!/usr/bin/env bash
# make bench (issue "Performance"): the go test benchmarks (reconcile.Plan at
# three sizes, controller overhead), then the sandbox benchmark
# internal/bench (usbctld plug-to-attach against the floor and the old
# virsh way, idle cost, start-up) through scripts/umockdev-exec, and ONE
# table of both: figure, value, target, ratio/ok. Then the same plug
# figures on the real stack (issue 12 part 5): e2e/kernel's TestBench in
# the real-kernel test host, with internal/benchreal inside, and its own
# table (plug and unplug, usbctld against the floor and virsh, and guest
# start with 8 devices).
#
#   scripts/bench.sh            # the real run (~4 min sandbox + ~4 min real stack)
#   scripts/bench.sh -smoke     # CI: every sandbox benchmark once (~1 min); the
#                               # real-stack smoke is TestBench in make test-kernel
#   scripts/bench.sh -real-only # the real-stack table alone
#
# USBCTL_BENCH_PLUGS (default 30) and USBCTL_BENCH_STARTS (default 5) size
# the real-stack run. Extra arguments go to internal/bench (e.g. -plugs 40
# -v -logs DIR).
# Must run as root (umockdev-exec makes namespaces; the sandbox runs
# libvirtd). Exits non-zero if a measurement could not be made; a missed
# target shows as MISSED in the table and does not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}

smoke=0
sandbox=1
args=()
for a in "$@"; do
	case "$a" in
	-smoke | --smoke) smoke=1; args+=(-smoke) ;;
	-real-only | --real-only) sandbox=0 ;;
	*) args+=("$a") ;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: must run as root (the sandbox runs libvirtd in namespaces)" >&2
	exit 1
fi

start=$(date +%s)
rc=0
brc=0
if [ "$sandbox" = 1 ]; then
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
	bash scripts/umockdev-exec "$BIN"/usbctl-bench -bin "$BIN" -gobench "$gobench" "${args[@]}" || brc=$?
fi

# The real stack: one test host boot (~30 s with libvirtd and the guest),
# then interleaved plugs and guest starts. Not in -smoke: make test-kernel
# already runs TestBench as a smoke (1 plug each, 1 start).
krc=0
if [ "$smoke" = 0 ]; then
	table=$(mktemp /tmp/usbctl-benchreal.XXXXXX)
	klog=$(mktemp /tmp/usbctl-benchreal-log.XXXXXX)
	plugs=${USBCTL_BENCH_PLUGS:-30}
	starts=${USBCTL_BENCH_STARTS:-5}
	echo "bench: real stack: go test -tags testhost -run '^TestBench\$' ./e2e/kernel/ ($plugs plugs each, $starts guest starts; log in $klog)" >&2
	USBCTL_BENCH_PLUGS=$plugs USBCTL_BENCH_STARTS=$starts USBCTL_BENCH_TABLE=$table \
		$GO test -count=1 -v -timeout 60m -tags testhost -run '^TestBench$' ./e2e/kernel/ >"$klog" 2>&1 || krc=$?
	if [ "$krc" -ne 0 ] || [ ! -s "$table" ]; then
		echo "bench: real-stack benchmark failed (exit $krc); the end of its log:" >&2
		tail -40 "$klog" >&2
		krc=1
	else
		cat "$table"
		rm -f "$klog"
	fi
	rm -f "$table"
fi
echo "bench: done in $(($(date +%s) - start)) s" >&2
if [ "$rc" -ne 0 ] || [ "$brc" -ne 0 ] || [ "$krc" -ne 0 ]; then
	exit 1
fi
