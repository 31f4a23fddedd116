package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// progressMin is the --count from which produce and consume show progress:
// below it they finish before a line would be useful.
const progressMin = 1000

// startProgress writes a progress line about n to w (stderr: stdout carries
// the messages and results) every interval until the returned stop is
// called or ctx ends; stop returns once the last line is written, and may be
// called more than once. total is the count expected, 0 when unknown.
func startProgress(ctx context.Context, w io.Writer, what string, n *atomic.Int64, total int64, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		last, lastAt := n.Load(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				cur := n.Load()
				fmt.Fprintln(w, progressLine(what, cur, total, float64(cur-last)/now.Sub(lastAt).Seconds()))
				last, lastAt = cur, now
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// progressLine is "sent 2500/10000 (25%), 1250 msg/s", or without the
// total when it is not known.
func progressLine(what string, cur, total int64, rate float64) string {
	if total > 0 {
		return fmt.Sprintf("%s %d/%d (%d%%), %.0f msg/s", what, cur, total, cur*100/total, rate)
	}
	return fmt.Sprintf("%s %d, %.0f msg/s", what, cur, rate)
}
