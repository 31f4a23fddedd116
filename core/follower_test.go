package core

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// copyRaw copies src's log past dst's end into dst, as a replica does.
func copyRaw(t *testing.T, src, dst *storage.Store) {
	t.Helper()
	if err := src.WaitIndexed(context.Background(), src.EndOffset()); err != nil {
		t.Fatal(err)
	}
	for off := dst.EndOffset(); ; {
		b, next, err := src.ReadRaw(off, 1<<20)
		if err != nil {
			t.Fatalf("ReadRaw(%d): %v", off, err)
		}
		if b == nil {
			return
		}
		if err := dst.AppendRaw(off, b); err != nil {
			t.Fatalf("AppendRaw(%d): %v", off, err)
		}
		off = next
	}
}

// TestFollowerServesReadsAndWritesNothing runs a follower core over a copy
// of a master's log: it reads what the master wrote, follows the topics
// and offsets the master adds later, refuses every write and appends
// nothing to its store.
func TestFollowerServesReadsAndWritesNothing(t *testing.T) {
	cfg := testConfig(t)
	master := openBroker(t, t.TempDir(), cfg)
	if _, err := master.CreateTopic("before", 2); err != nil {
		t.Fatal(err)
	}
	publishN(t, master.Broker, "before", 5, PublishOptions{Queue: 0}, nil)

	rs, err := storage.Open(t.TempDir(), storage.Options{SegmentSize: 8 << 20, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if err := rs.SetLogID(master.store.LogID()); err != nil {
		t.Fatal(err)
	}
	rs.Fence(errors.New("replica: fenced")) // the role manager's fence; the copy goes on
	copyRaw(t, master.store, rs)

	fcfg := cfg
	fcfg.Follower = true
	f, err := New(rs, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := rs.WaitIndexed(context.Background(), rs.EndOffset()); err != nil {
		t.Fatal(err)
	}
	end := rs.EndOffset()
	// The follower applies what the dispatcher indexes, on its own
	// goroutine: the records may have come after New replayed.
	waitFor(t, 5*time.Second, "the follower to know a topic of its log", func() bool { return f.HasTopic("before") })
	res, err := f.Read(context.Background(), "before", 0, 0, ReadOptions{Max: 10})
	if err != nil || len(res.Messages) != 5 {
		t.Fatalf("read on the follower: %d messages, %v", len(res.Messages), err)
	}

	// Later topics and committed offsets of the master appear on it.
	if _, err := master.CreateTopic("after", 3); err != nil {
		t.Fatal(err)
	}
	if err := master.CommitOffset("g", "before", 0, 4); err != nil {
		t.Fatal(err)
	}
	if err := master.saveOffsets(); err != nil {
		t.Fatal(err)
	}
	copyRaw(t, master.store, rs)
	end = rs.EndOffset()
	waitFor(t, 5*time.Second, "the follower to see the master's new topic and offsets", func() bool {
		off, ok := f.CommittedOffset("g", "before", 0)
		return f.HasTopic("after") && ok && off == 4
	})

	// Writes are refused; offsets commit in memory.
	if _, err := f.Publish(context.Background(), &Message{Topic: "before", Body: []byte("x")}, PublishOptions{}); !errors.Is(err, ErrFenced) {
		t.Fatalf("publish on a follower: %v", err)
	}
	if _, err := f.CreateTopic("new", 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("create topic on a follower: %v", err)
	}
	if f.HasTopic("new") {
		t.Fatal("a refused topic stayed")
	}
	if err := f.CommitOffset("g", "before", 0, 5); err != nil {
		t.Fatal(err)
	}
	if off, _ := f.CommittedOffset("g", "before", 0); off != 5 {
		t.Fatalf("committed on the follower: %d, want 5", off)
	}
	time.Sleep(3 * cfg.FlushInterval) // a janitor round that would save
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rs.EndOffset(); got != end {
		t.Fatalf("the follower wrote to its store: end %d, was %d", got, end)
	}
}
