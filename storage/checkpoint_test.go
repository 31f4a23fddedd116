package storage

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// A checkpoint records how far the dispatcher indexed only once the log is
// synced that far: it flushes the log first when the flusher has not yet.
// (FlushInterval is long: neither the flusher nor the checkpointer ticks.)
func TestCheckpointFlushesTheLogFirst(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.FlushInterval = time.Hour
	s := openTest(t, dir, o)
	var end int64
	for seq := range 100 {
		var err error
		if _, end, err = s.AppendBatchNoWait([]*Message{genMessage(seq, 3, 2, 512)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitIndexed(ctx, end); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	f, cp, ok, err := openCheckpoint(filepath.Join(dir, "index"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	s.flushMu.Lock()
	flushed := s.flushed
	s.flushMu.Unlock()
	if !ok || cp.offset != end || flushed < cp.offset {
		t.Fatalf("checkpoint %+v (valid %v) of a log written up to %d and synced up to %d", cp, ok, end, flushed)
	}
}
