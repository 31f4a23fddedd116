#!/usr/bin/env bash
# Storage and core benchmarks beside the disk's own figures, in one run, on the same
# file system. Usage: bench/run.sh [DIR]   (DIR defaults to $TMPDIR or /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${TMPDIR:-/tmp}}
probe="$dir/ferry-dd-probe.$$"
trap 'rm -f "$probe"' EXIT

echo "== disk: sequential write, 2 GiB, buffered then fdatasync (dd)"
dd if=/dev/zero of="$probe" bs=1M count=2048 conv=fdatasync 2>&1 | tail -1
echo "== disk: fsync rate, 2000 x 4 KiB writes with O_DSYNC (dd)"
dd if=/dev/zero of="$probe" bs=4k count=2000 oflag=dsync 2>&1 | tail -1
rm -f "$probe"

echo "== ferry storage (go test -bench)"
TMPDIR="$dir" go test -run '^$' -bench 'Append/async/body=128|ReadQueue' -benchtime 2000000x ./storage/
TMPDIR="$dir" go test -run '^$' -bench 'Append/async/body=4096' -benchtime 400000x ./storage/
TMPDIR="$dir" go test -run '^$' -bench 'AppendSync64' -benchtime 200000x ./storage/

echo "== ferry core (go test -bench)"
TMPDIR="$dir" go test -run '^$' -bench 'PublishToGroup|PublishRouting' -benchtime 1000000x ./core/
go test -run '^$' -bench 'Match100k' -benchmem ./core/route/
