#!/usr/bin/env bash
# Runs all of Ferry's tests. It first installs and starts whatever the tests
# need (the MQTT command-line clients, RabbitMQ for the bridge's tests); it is
# safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go is not on PATH; install Go $(sed -n 's/^go //p' go.mod) or later" >&2
	exit 1
fi

# need CMD PACKAGE: installs the Debian package that provides CMD when CMD is
# missing (the tests that use it fail under CI=true without it).
need() {
	command -v "$1" >/dev/null 2>&1 && return
	echo "test.sh: installing $2 (for $1)" >&2
	local sudo=""
	[[ $(id -u) -eq 0 ]] || sudo="sudo"
	if [[ -z ${apt_updated:-} ]]; then
		$sudo apt-get update -qq >/dev/null
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}
need mosquitto_pub mosquitto-clients
# RabbitMQ on 127.0.0.1:5672 (guest/guest), the bridge's real counterpart,
# unless FERRY_TEST_AMQP_URL names another one. Under CI=true the bridge's
# tests fail rather than skip when it does not answer.
amqp_answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
if [[ -z "${FERRY_TEST_AMQP_URL:-}" ]] && ! amqp_answers; then
	if ! command -v rabbitmq-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/rabbitmq-server ]]; then
		echo "test.sh: installing rabbitmq-server" >&2
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
	fi
	export PATH="$PATH:/usr/sbin"
	echo "test.sh: starting RabbitMQ" >&2
	if ! as_root service rabbitmq-server start >/dev/null 2>&1; then
		as_root rabbitmq-server -detached >/dev/null 2>&1 || true
	fi
	for _ in $(seq 1 120); do
		amqp_answers && break
		sleep 1
	done
	if ! amqp_answers; then
		echo "test.sh: RabbitMQ did not answer on 127.0.0.1:5672 within 2 minutes" >&2
		exit 1
	fi
	as_root rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
fi

unformatted=$(gofmt -l .)
if [[ -n "$unformatted" ]]; then
	echo "test.sh: not gofmt'd:" >&2
	echo "$unformatted" >&2
	exit 1
fi

go vet ./...
go test -race -count=1 ./...

# RocketMQ's own Go client against Ferry, in a module of its own so that the
# main module does not depend on it.
(cd compat/rocketmq && go vet ./... && go test -race -count=1 ./...)
