#!/bin/sh
# Starts one Redis data node of the Compose stack:
#
#   start-redis.sh NAME [MASTER_HOST MASTER_PORT] [-- EXTRA_REDIS_ARGS...]
#
# NAME is the address the node announces to its master and to Sentinel
# (its Compose service name: container IPs change on every restart). With
# MASTER_HOST and MASTER_PORT the node starts as a replica of that master.
#
# The node's own config lives in its data volume, written on the first start
# only, because Sentinel records every role change in it (REPLICAOF followed
# by CONFIG REWRITE). A node restarted after a failover must come back in the
# role Sentinel last gave it, not in the one this Compose file started it
# in: a promoted replica coming back as a replica of the old master would
# resync from it and drop every write it acknowledged while it was master.
# The file includes the shared, read-only redis.conf first. Until Sentinel
# first rewrites it, editing redis.conf takes effect on the next restart;
# CONFIG REWRITE then copies every setting that differs from Redis's default
# after the include (the last value of a directive wins), so from then on
# change a setting on each node with CONFIG SET followed by CONFIG REWRITE.
set -eu

REDIS_SHARED_CONF=${REDIS_SHARED_CONF:-/usr/local/etc/redis/redis.conf}
REDIS_NODE_CONF=${REDIS_NODE_CONF:-/data/redis-node.conf}
REDIS_SERVER=${REDIS_SERVER:-redis-server}

if [ $# -lt 1 ]; then
	echo "usage: start-redis.sh NAME [MASTER_HOST MASTER_PORT] [-- EXTRA_REDIS_ARGS...]" >&2
	exit 2
fi
name=$1
shift
master_host= master_port=
if [ $# -ge 2 ] && [ "$1" != "--" ]; then
	master_host=$1 master_port=$2
	shift 2
fi
if [ $# -gt 0 ]; then
	if [ "$1" != "--" ]; then
		echo "start-redis.sh: unexpected argument '$1' (extra redis-server arguments go after --)" >&2
		exit 2
	fi
	shift
fi

if [ ! -f "$REDIS_NODE_CONF" ]; then
	tmp="$REDIS_NODE_CONF.tmp"
	{
		echo "# Written by start-redis.sh on this node's first start. Sentinel rewrites it"
		echo "# (CONFIG REWRITE) when it changes the node's role: keep it with the data."
		echo "include $REDIS_SHARED_CONF"
		echo "replica-announce-ip $name"
		if [ -n "$master_host" ]; then
			echo "replicaof $master_host $master_port"
		fi
	} >"$tmp"
	mv "$tmp" "$REDIS_NODE_CONF"
fi
exec "$REDIS_SERVER" "$REDIS_NODE_CONF" "$@"
