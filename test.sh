#!/usr/bin/env bash
# Runs all of Ferry's tests. It first installs and starts whatever the tests
# need (the MQTT command-line clients); it is safe to run again and again.
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
