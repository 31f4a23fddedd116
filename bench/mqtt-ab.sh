#!/usr/bin/env bash
# Alternated single fleet rounds of Ferry builds (and Mosquitto) with one
# load generator (bench/mqtt), then each one's medians: what a change does
# to the fleet's p50, p99, broker CPU and thread switches per message when
# the machine drifts more from round to round than the change moves them.
# Usage: bench/mqtt-ab.sh DEVICES ROUNDS NAME=FERRY_BINARY... [mosquitto]
#   e.g. bench/mqtt-ab.sh 1000 5 before=/tmp/ferry-a after=/tmp/ferry-b mosquitto
# A FERRY_BINARY may be a wrapper script (GOMAXPROCS=1 exec BIN "$@").
# PIN=1 runs each broker on CPU 0 and the load generator on the others
# (bench/mqtt --pin).
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,8p "$0" >&2; exit 2; }
devices=$1 rounds=$2
shift 2
cd "$(dirname "$0")/mqtt"
ulimit -n "$(ulimit -Hn)"
gen=$(mktemp -d)/bench-mqtt
trap 'rm -rf "$(dirname "$gen")"' EXIT
go build -o "$gen" .
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
log=$(dirname "$gen")/rounds
for _ in $(seq "$rounds"); do
	for sys in "$@"; do
		if [ "$sys" = mosquitto ]; then
			name=mosquitto args=(--systems mosquitto --mosquitto "$mosq")
		else
			name=${sys%%=*} args=(--systems ferry-async --ferry "${sys#*=}")
		fi
		[ -n "${PIN:-}" ] && args+=(--pin)
		out=$("$gen" "${args[@]}" --rounds 0 --idle 0 --fleet "$devices" --fleet-duration 10s --fleet-rounds 1 2>&1)
		p50=$(grep -oP 'latency p50 \K[0-9.]+' <<<"$out" | head -1)
		p99=$(grep -oP 'latency p50 [0-9.]+ ms p99 \K[0-9.]+' <<<"$out" | head -1)
		cpu=$(grep -oP 'broker CPU \K[0-9.]+' <<<"$out" | head -1)
		sw=$(grep -oP 'write system calls, \K[0-9.]+' <<<"$out" | head -1)
		over=$(grep -oP 'fleet: \K[0-9.]+(?=% of messages over 1 ms)' <<<"$out" | head -1)
		echo "$name $p50 $p99 $cpu $sw $over" | tee -a "$log"
	done
done
echo "medians: name, p50 ms, p99 ms, broker CPU µs per message, thread switches per message, % of messages over 1 ms"
for sys in "$@"; do
	name=${sys%%=*}
	echo -n "$name"
	for col in 2 3 4 5 6; do
		awk -v n="$name" -v c="$col" '$1 == n { print $c }' "$log" | sort -n |
			awk '{ a[NR] = $1 } END { printf " %s", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
	done
	echo
done
