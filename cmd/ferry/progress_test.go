package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the progress goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestProgress(t *testing.T) {
	var n atomic.Int64
	n.Store(250)
	var out lockedBuffer
	stop := startProgress(context.Background(), &out, "received", &n, 1000, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "received 250/1000 (25%)") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line in %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	after := out.String()
	time.Sleep(10 * time.Millisecond)
	if out.String() != after {
		t.Fatalf("a line after stop: %q", strings.TrimPrefix(out.String(), after))
	}
	stop() // a second stop is harmless

	if got := progressLine("sent", 5, 0, 2.4); got != "sent 5, 2 msg/s" {
		t.Errorf("without a total: %q", got)
	}
}
