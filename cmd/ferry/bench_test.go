package main

import (
	"strings"
	"testing"
	"time"
)

// bench consume times only the messages sent during the run: a backlog's
// age is not a latency.
func TestBenchConsumeTimesOnlyTheRunsMessages(t *testing.T) {
	began := time.Now()
	var st benchStats
	for range 3 {
		st.received(began.Add(-time.Hour), began) // the backlog: an hour old
	}
	st.received(time.Now(), began)
	var out strings.Builder
	st.report(&out, "consume", time.Second, 10)
	got := out.String()
	if !strings.Contains(got, "consume: 4 messages in 1s") || !strings.Contains(got, "latency of the 1 sent during the run") ||
		!strings.Contains(got, "(3 sent before it not timed)") || strings.Contains(got, "1h") {
		t.Fatalf("report %q", got)
	}

	var backlog benchStats
	backlog.received(began.Add(-time.Minute), began)
	out.Reset()
	backlog.report(&out, "consume", time.Second, 10)
	if got := out.String(); !strings.Contains(got, "no latency: all were sent before the run") {
		t.Fatalf("report of a backlog only %q", got)
	}

	var live benchStats
	live.received(time.Now(), began)
	out.Reset()
	live.report(&out, "consume", time.Second, 10)
	if got := out.String(); !strings.Contains(got, "; latency p50 ") {
		t.Fatalf("report of live messages only %q", got)
	}
}
