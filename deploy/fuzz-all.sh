#!/usr/bin/env bash
# Runs every fuzz target of every package for FUZZTIME (default 20s) each.
# `go test -fuzz` accepts one target in one package per run, hence the loop.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-20s}
count=0
for pkg in $(go list ./...); do
	# A package that does not build must fail the run, not be skipped:
	# capture first so set -e sees go test's status.
	listing=$(go test -list '^Fuzz' "$pkg")
	for name in $(grep '^Fuzz' <<<"$listing" || true); do
		count=$((count + 1))
		echo "==> $pkg $name (fuzztime $fuzztime)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
echo "fuzz: ran $count target(s)"
