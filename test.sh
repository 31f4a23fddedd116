#!/usr/bin/env bash
# Runs all of Ferry's tests. It first installs and starts whatever the tests
# need (for now nothing beyond Go); it is safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go is not on PATH; install Go $(sed -n 's/^go //p' go.mod) or later" >&2
	exit 1
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
