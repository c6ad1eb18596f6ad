#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a short time ($1,
# default 5s) on top of its committed corpus. `go test -fuzz` takes one target
# at a time, so list them and loop.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" at the end of a -fuzztime window when its workers are starved
# (go.dev/issue/75804, fixed in Go 1.27; CI on 2 cores hit it in
# FuzzParseIDPattern with no failing input). That failure writes no input
# and names none, so it is told apart from a finding by exactly that: a run
# whose only failure line is the deadline and that wrote no "Failing input"
# is run once more; any other failure, or the same one twice, fails.
set -euo pipefail
t=${1:-5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# coordinator_race reports whether the run in $out failed only by the
# coordinator's deadline: the race's signature, and nothing a finding prints.
coordinator_race() {
	grep -qx '[[:space:]]*context deadline exceeded' "$out" &&
		! grep -q 'Failing input written to' "$out" &&
		! grep -q -e '^panic:' -e 'fuzz: minimizing' "$out"
}

for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		for try in 1 2; do
			echo "fuzz $pkg $f ($t, run $try)"
			if go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg" 2>&1 | tee "$out"; then
				break
			fi
			if [ "$try" = 1 ] && coordinator_race; then
				echo "fuzz-smoke: $f failed by the fuzz coordinator's deadline alone (go.dev/issue/75804), no input written; running it again"
				continue
			fi
			echo "fuzz-smoke: $f failed" >&2
			exit 1
		done
	done
done
