#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a short time ($1,
# default 5s) on top of its committed corpus. `go test -fuzz` takes one target
# at a time, so list them and loop.
set -euo pipefail
t=${1:-5s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz $pkg $f ($t)"
		go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" "$pkg"
	done
done
