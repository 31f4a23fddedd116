#!/usr/bin/env bash
# Ferry's native protocol beside RabbitMQ (classic and quorum queues) and NATS
# JetStream, in one run, the systems alternated in every round (bench/peers):
# confirmed publish and consume rates and end-to-end latency at half the peak,
# 128-byte and 4 KiB bodies, plus dd's figures for the disk. Prints a Markdown
# table and writes docs/benchmarks.png. Installs nats-server v2.15.3
# with `go install` if missing; RabbitMQ is used where it runs
# (127.0.0.1:5672, guest/guest).
# Usage: bench/peers.sh [flags of bench/peers, e.g. --rounds 3 --sizes 128,4096]
#        bench/peers.sh --replicated    (writes docs/benchmarks-replicated.png:
#                                        a Ferry sync group of three against
#                                        NATS JetStream R3 and RabbitMQ quorum
#                                        queues, with the failover time)
#        bench/peers.sh --amqp-frontend (Ferry's AMQP 0-9-1 listener, async and
#                                        sync flush, against RabbitMQ classic and
#                                        quorum queues: the same amqp091-go load)
#        bench/peers.sh --profile DIR   (CPU, allocation, mutex and block profiles
#                                        of Ferry's native publish path instead)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/bench/peers"
if [ "${1:-}" = --profile ]; then
	dir=$(mkdir -p "${2:?--profile DIR}" && cd "$2" && pwd)
	go test -run '^$' -bench NativePublish -benchmem -benchtime 300000x -count 1 \
		-cpuprofile "$dir/cpu.out" -memprofile "$dir/mem.out" -memprofilerate 4096 \
		-mutexprofile "$dir/mutex.out" -blockprofile "$dir/block.out" -o "$dir/peers.test" | tee "$dir/bench.txt"
	for p in cpu mutex block; do
		echo "== $p"
		go tool pprof -top -nodecount 25 "$dir/peers.test" "$dir/$p.out" 2>/dev/null | head -34
	done
	echo "== allocations (objects)"
	go tool pprof -sample_index alloc_objects -top -nodecount 25 "$dir/peers.test" "$dir/mem.out" 2>/dev/null | head -34
	exit
fi
# nats-server: the release named here, built by the Go toolchain into
# $(go env GOPATH)/bin (not a distribution's older package).
nats_version=v2.15.3
nats=${NATS_SERVER:-$(go env GOPATH)/bin/nats-server}
if ! "$nats" --version 2>/dev/null | grep -q "$nats_version\$"; then
	GOBIN=$(dirname "$nats") go install "github.com/nats-io/nats-server/v2@$nats_version"
fi
chart=$root/docs/benchmarks.png
for a in "$@"; do
	case $a in
	--replicated) chart=$root/docs/benchmarks-replicated.png ;;
	--amqp-frontend) chart=$root/docs/benchmarks-amqp.png ;;
	esac
done
exec go run . --nats-server "$nats" --chart "$chart" "$@"
