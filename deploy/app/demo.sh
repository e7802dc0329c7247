#!/bin/sh
# The Compose stack's example application. It knows one Redis address: the
# replproxy sidecar on localhost. Each round writes a counter, then reads it
# back on a new connection (every redis-cli call is its own connection):
# replproxy's default causal consistency makes the read see the write even
# when a replica serves it, across connections, as one Redis would.
#
#   REDIS_HOST (127.0.0.1), REDIS_PORT (6380): the proxy
#   ROUNDS (0 = forever), INTERVAL (seconds between rounds, 1)
#
# With ROUNDS set it exits 0 only if every write succeeded and every read saw
# the write before it (deploy/deploy_test.go runs it so, through a real proxy).
set -u

host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6380}
rounds=${ROUNDS:-0}
interval=${INTERVAL:-1}
key=${DEMO_KEY:-demo:counter}

i=0 failed=0 stale=0
report() {
	echo "demo: $i rounds, $failed failed writes, $stale stale reads"
}
while [ "$rounds" -eq 0 ] || [ "$i" -lt "$rounds" ]; do
	i=$((i + 1))
	# redis-cli exits 0 on error replies too: compare the reply itself.
	reply=$(redis-cli -h "$host" -p "$port" SET "$key" "$i" 2>&1)
	if [ "$reply" != "OK" ]; then
		failed=$((failed + 1))
		echo "demo: round $i: SET answered: $reply"
	else
		got=$(redis-cli -h "$host" -p "$port" GET "$key" 2>&1)
		if [ "$got" != "$i" ]; then
			stale=$((stale + 1))
			echo "demo: round $i: wrote $i, then read: $got"
		fi
	fi
	if [ $((i % 60)) -eq 0 ]; then
		report
	fi
	sleep "$interval"
done
report
[ "$failed" -eq 0 ] && [ "$stale" -eq 0 ]
