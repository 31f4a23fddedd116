package storage

import (
	"context"
	"testing"
	"time"
)

// A deferred append is written by the caller's WriteNow, on its own
// goroutine, unless writing needs a wait: sync flush, or a write of
// another goroutine under way.
func TestWriteNow(t *testing.T) {
	o := testOptions(t)
	o.FlushInterval = time.Hour // no flusher commit between the append and the checks
	s := openTest(t, t.TempDir(), o)
	_, end, err := s.AppendBatchDeferred([]*Message{genMessage(0, 1, 1, 100)})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.written.Load(); got >= end {
		t.Fatalf("a deferred append was written (to %d) before WriteNow", got)
	}
	s.commitMu.Lock() // a write under way
	ok, err := s.WriteNow(end)
	s.commitMu.Unlock()
	if ok || err != nil {
		t.Fatalf("WriteNow during another write = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.WriteNow(end); !ok || err != nil {
		t.Fatalf("WriteNow = %v, %v; want true, nil", ok, err)
	}
	if got := s.written.Load(); got < end {
		t.Fatalf("written to %d after WriteNow(%d)", got, end)
	}
	if ok, err := s.WriteNow(end); !ok || err != nil { // already written
		t.Fatalf("WriteNow again = %v, %v; want true, nil", ok, err)
	}

	o = testOptions(t)
	o.FlushMode = FlushSync
	sy := openTest(t, t.TempDir(), o)
	_, end, err = sy.AppendBatchDeferred([]*Message{genMessage(0, 1, 1, 100)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := sy.WriteNow(end); ok || err != nil {
		t.Fatalf("WriteNow with sync flush = %v, %v; want false (an fsync is a wait), nil", ok, err)
	}
	if err := sy.WaitDurable(context.Background(), end); err != nil {
		t.Fatal(err)
	}
}
