#!/usr/bin/env bash
# Ferry's MQTT front-end beside Mosquitto and NATS's MQTT listener (on
# JetStream), in one run, with one load generator (bench/mqtt): fan-in QoS 0
# and QoS 1, a device fleet with latency, and RSS per idle connection;
# prints a Markdown table. Installs mosquitto if missing (Debian) and
# nats-server v2.15.3 with `go install`.
# Usage: bench/mqtt.sh [flags of bench/mqtt, e.g. --rounds 3 --count 300000]
#        bench/mqtt.sh --profile DIR     (CPU and allocation profiles of Ferry instead)
set -euo pipefail
cd "$(dirname "$0")/mqtt"
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi
ulimit -n "$(ulimit -Hn)" # 10,000 idle connections need as many descriptors, here and in the brokers
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
nats_version=v2.15.3
nats=${NATS_SERVER:-$(go env GOPATH)/bin/nats-server}
if ! "$nats" --version 2>/dev/null | grep -q "$nats_version\$"; then
	GOBIN=$(dirname "$nats") go install "github.com/nats-io/nats-server/v2@$nats_version"
fi
echo "== $(nproc) CPUs, $(go version | cut -d' ' -f3), $($mosq -h | head -1)" >&2
exec go run . --mosquitto "$mosq" --nats-server "$nats" "$@"
