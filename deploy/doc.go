// Package deploy holds no Go code of its own: it is the deployment files
// (Dockerfile, docker-compose.yml, Redis, Sentinel, replproxy, Prometheus and
// Grafana configs, the systemd unit and the Kubernetes snippet) and the
// tests that prove them.
//
// There is no Docker engine where the tests run, so the files are proven the
// two ways left: by loading them with the real parsers (compose-go, promtool,
// systemd-analyze, encoding/json) and by running the very same files with
// the real programs on loopback ports: redis-server and Sentinels through
// internal/redistest, replproxy built by the Dockerfile's own build command,
// and a real Prometheus that scrapes it, evaluates every dashboard and alert
// expression and fires the lag alert when a replica is paused.
//
// The tests need redis-server, redis-sentinel, redis-cli, prometheus,
// promtool and systemd-analyze; a missing one fails the test with the
// command that installs it (deploy/ensure-redis.sh installs them all).
package deploy
