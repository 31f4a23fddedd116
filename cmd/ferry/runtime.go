package main

import (
	"os"
	"runtime/debug"

	"github.com/ferrymq/ferry/config"
)

// tuneRuntime applies runtime.gc-percent and runtime.memory-limit to this
// server process, unless GOGC or GOMEMLIMIT are set (they win), and returns
// what it set, for the start log line.
func tuneRuntime(rc config.RuntimeConfig) []any {
	var attrs []any
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(rc.GCPercent)
		attrs = append(attrs, "gc-percent", rc.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && rc.MemoryLimit > 0 {
		debug.SetMemoryLimit(rc.MemoryLimit)
		attrs = append(attrs, "memory-limit", rc.MemoryLimit)
	}
	return attrs
}
