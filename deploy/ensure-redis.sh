#!/usr/bin/env bash
# Makes sure the Redis binaries that tests, benchmarks and `make run` start
# are on PATH. Nothing here relies on a Redis service running: every test
# starts its own redis-server processes on free loopback ports.
set -euo pipefail

tools=(redis-server redis-cli redis-benchmark redis-sentinel)

have_all() {
	local t
	for t in "${tools[@]}"; do
		command -v "$t" >/dev/null 2>&1 || return 1
	done
}

report_ok() {
	local v
	v=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
	echo "redis: ok (redis-server ${v:-unknown version})"
	# DESIGN.md relies on Redis 7.0 behaviour (ROLE offsets, diskless defaults).
	if [[ -n "$v" && "${v%%.*}" -lt 7 ]]; then
		echo "warning: redis-server $v is older than 7.0; replproxy's tests expect 7.0+" >&2
	fi
}

# The deployment tests (deploy/) run a real Prometheus and promtool on the
# Compose stack's config; Debian's prometheus package has both.
ensure_prometheus() {
	if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
		echo "prometheus: ok ($(prometheus --version 2>&1 | head -n 1))"
		return 0
	fi
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "prometheus: installing the prometheus package with apt-get" >&2
		export DEBIAN_FRONTEND=noninteractive
		# The package may try to start a prometheus service; nothing depends on it.
		if apt-get update -qq && apt-get install -y -qq prometheus &&
			command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
			echo "prometheus: ok ($(prometheus --version 2>&1 | head -n 1))"
			return 0
		fi
		echo "prometheus: apt-get could not install the package (see above)" >&2
	fi
	echo "missing: prometheus and promtool (the deployment tests in deploy/ need them and fail without). Install with: sudo apt-get install -y prometheus" >&2
	return 1
}
# `make bench` runs twemproxy (nutcracker) beside replproxy when it is
# installed (DESIGN.md "Performance targets" compares with it). Optional:
# without it the comparison is left out and said so, so nothing fails here.
ensure_nutcracker() {
	if command -v nutcracker >/dev/null 2>&1; then
		echo "nutcracker: ok ($(nutcracker -V 2>&1 | head -n 1))"
		return 0
	fi
	if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "nutcracker: installing the nutcracker package with apt-get" >&2
		export DEBIAN_FRONTEND=noninteractive
		# The package may try to start a nutcracker service; nothing depends on it.
		if apt-get update -qq && apt-get install -y -qq nutcracker && command -v nutcracker >/dev/null 2>&1; then
			echo "nutcracker: ok ($(nutcracker -V 2>&1 | head -n 1))"
			return 0
		fi
	fi
	echo "note: nutcracker (twemproxy) not installed: make bench leaves out the comparison with it. Install with: sudo apt-get install -y nutcracker" >&2
}
ensure_nutcracker

# `make run` calls this script too and needs no Prometheus: only CI stops
# here; elsewhere the deployment tests fail, naming the package.
if ! ensure_prometheus && [[ "${CI:-}" == "true" ]]; then
	exit 1
fi

if have_all; then
	report_ok
	exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "redis: installing redis-server redis-tools redis-sentinel with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	# The packages may try to start system services; that is harmless and
	# nothing below depends on them.
	if apt-get update -qq && apt-get install -y -qq redis-server redis-tools redis-sentinel && have_all; then
		report_ok
		exit 0
	fi
	echo "redis: apt-get could not install the packages (see above)" >&2
fi

echo "missing: redis-server (and redis-tools, redis-sentinel). Install with: sudo apt-get install -y redis-server redis-tools redis-sentinel" >&2
exit 1
