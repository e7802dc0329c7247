#!/usr/bin/env bash
# `make run`: a throw-away master and two replicas on loopback, and replproxy
# in front of them on 127.0.0.1:6380. Ctrl-C stops everything this script
# started and deletes its temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

master_port=16379
replica_ports=(16380 16381)
proxy_port=6380

deploy/ensure-redis.sh
make --no-print-directory build

port_in_use() {
	# Connecting succeeds only if something listens; bash's /dev/tcp avoids
	# depending on ss/netstat/nc being installed.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in "$master_port" "${replica_ports[@]}" "$proxy_port"; do
	if port_in_use "$port"; then
		echo "run-local: port 127.0.0.1:$port is already in use; stop whatever listens there (ports used: $master_port ${replica_ports[*]} $proxy_port)" >&2
		exit 1
	fi
done

workdir=$(mktemp -d "${TMPDIR:-/tmp}/replproxy-run.XXXXXX")
pids=()

cleanup() {
	trap - INT TERM EXIT
	local pid i
	# Newest first: the proxy, then replicas, then the master.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_redis() { # name port [extra redis-server args...]
	local name=$1 port=$2
	shift 2
	mkdir -p "$workdir/$name"
	redis-server --port "$port" --bind 127.0.0.1 --dir "$workdir/$name" \
		--save "" --appendonly no --repl-diskless-sync-delay 0 --daemonize no \
		--logfile "$workdir/$name/redis.log" "$@" &
	pids+=("$!")
}

wait_for() { # description logfile command...
	local what=$1 log=$2
	shift 2
	for _ in $(seq 100); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "run-local: timed out waiting for $what; end of $log:" >&2
	tail -n 20 "$log" >&2 || true
	exit 1
}

pings() { [[ "$(redis-cli -p "$1" ping)" == PONG ]]; }
# No pipe into grep -q: with pipefail, grep exiting early could fail redis-cli.
link_up() { [[ "$(redis-cli -p "$1" info replication)" == *master_link_status:up* ]]; }

start_redis master "$master_port"
wait_for "the master on port $master_port" "$workdir/master/redis.log" pings "$master_port"
for port in "${replica_ports[@]}"; do
	start_redis "replica-$port" "$port" --replicaof 127.0.0.1 "$master_port"
done
for port in "${replica_ports[@]}"; do
	log="$workdir/replica-$port/redis.log"
	wait_for "the replica on port $port" "$log" pings "$port"
	wait_for "the replica on port $port to sync with the master" "$log" link_up "$port"
done

cat <<MSG

  Redis master   127.0.0.1:$master_port
  Redis replicas 127.0.0.1:${replica_ports[0]} 127.0.0.1:${replica_ports[1]}
  Logs           $workdir

  replproxy is starting on 127.0.0.1:$proxy_port. Connect with:

      redis-cli -p $proxy_port

  Ctrl-C stops the proxy and the Redis servers.

MSG

replica_args=()
for port in "${replica_ports[@]}"; do
	replica_args+=(--replica "127.0.0.1:$port")
done
# Extra arguments (make run RUNFLAGS=...) go to the proxy.
bin/replproxy --listen "127.0.0.1:$proxy_port" --master "127.0.0.1:$master_port" "${replica_args[@]}" "$@" &
proxy_pid=$!
pids+=("$proxy_pid")
# In the background plus wait rather than in the foreground: wait returns as
# soon as a trapped signal arrives, so a TERM sent to this script stops
# everything at once instead of after the proxy happens to exit.
status=0
wait "$proxy_pid" || status=$?
exit "$status"
