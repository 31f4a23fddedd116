package core

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// publishTo stores bodies in queue 0 of topic, each with its subject, and
// waits until the queue's index holds them.
func publishTo(t *testing.T, b *Broker, topic string, subjects ...string) {
	t.Helper()
	_, before := b.Offsets(topic, 0)
	for _, s := range subjects {
		if _, err := b.Publish(t.Context(), &Message{Topic: topic, Subject: s, Body: []byte(s)}, PublishOptions{Queue: 0}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the messages indexed", func() bool {
		_, hi := b.Offsets(topic, 0)
		return hi == before+int64(len(subjects))
	})
}

func TestReadLongPoll(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t)).Broker
	if _, err := b.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}

	// Nothing there: a read waits, and a publish wakes it.
	type answer struct {
		res ReadResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := b.Read(t.Context(), "t", 0, 0, ReadOptions{Max: 10, Wait: time.Minute})
		got <- answer{res, err}
	}()
	publishTo(t, b, "t", "a")
	a := <-got
	if a.err != nil || len(a.res.Messages) != 1 || string(a.res.Messages[0].Body) != "a" || a.res.Next != 1 || a.res.Moved {
		t.Fatalf("long-polled read: %+v, %v", a.res, a.err)
	}

	// Past the end, without a wait: moved to the end.
	res, err := b.Read(t.Context(), "t", 0, 9, ReadOptions{})
	if err != nil || !res.Moved || res.Next != 1 || res.Max != 1 || len(res.Messages) != 0 {
		t.Fatalf("read past the end: %+v, %v", res, err)
	}
	// At the end, without a wait: nothing, not moved.
	if res, err := b.Read(t.Context(), "t", 0, 1, ReadOptions{}); err != nil || res.Moved || res.Next != 1 || len(res.Messages) != 0 {
		t.Fatalf("read at the end: %+v, %v", res, err)
	}

	// Past the end, with a wait: the read waits for its offset to come
	// (a send acknowledged ahead of the index) rather than moving.
	go func() {
		res, err := b.Read(t.Context(), "t", 0, 2, ReadOptions{Max: 10, Wait: time.Minute})
		got <- answer{res, err}
	}()
	publishTo(t, b, "t", "b", "c")
	a = <-got
	if a.err != nil || a.res.Moved || len(a.res.Messages) != 1 || string(a.res.Messages[0].Body) != "c" || a.res.Next != 3 {
		t.Fatalf("read past the end, waiting: %+v, %v", a.res, a.err)
	}

	// A reader gone during the wait gets its context's error.
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		res, err := b.Read(ctx, "t", 0, 3, ReadOptions{Wait: time.Minute})
		got <- answer{res, err}
	}()
	cancel()
	if a := <-got; !errors.Is(a.err, context.Canceled) {
		t.Fatalf("read of a reader gone: %+v, %v", a.res, a.err)
	}

	// An invalid queue is an error naming it.
	if _, err := b.Read(t.Context(), "t", -1, 0, ReadOptions{}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("read of queue -1: %v", err)
	}
}

func TestReadFilter(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t)).Broker
	if _, err := b.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	publishTo(t, b, "t", "a", "b", "a", "a")
	used := 0
	res, err := b.Read(t.Context(), "t", 0, 0, ReadOptions{Max: 10, Filter: route.Exact("b"), Use: func(r *ReadResult) {
		used++
		if len(r.Messages) != 1 || r.Messages[0].Subject != "b" {
			t.Errorf("Use saw %+v", r.Messages)
		}
	}})
	// The messages were Use's alone: their memory serves later reads.
	if err != nil || len(res.Messages) != 0 || res.Next != 4 || used != 1 {
		t.Fatalf("filtered read: %+v, %v; Use called %d times", res, err, used)
	}
	// All passed over: answered at once, past them, even with a wait.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err = b.Read(ctx, "t", 0, 2, ReadOptions{Filter: route.Exact("b"), Wait: time.Hour, Use: func(*ReadResult) { used++ }})
	if err != nil || len(res.Messages) != 0 || res.Next != 4 || res.Moved || used != 1 {
		t.Fatalf("read of messages all filtered out: %+v, %v; Use called %d times", res, err, used)
	}
	// Max bounds the messages; the next read goes on from Next.
	res, err = b.Read(t.Context(), "t", 0, 0, ReadOptions{Max: 2})
	if err != nil || len(res.Messages) != 2 || res.Next != 2 {
		t.Fatalf("read of 2: %+v, %v", res, err)
	}
}

// An offset below the queue's minimum (deleted by retention) moves to the
// minimum at once, however long the read would wait.
func TestReadBelowMin(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	st, err := storage.Open(t.TempDir(), storage.Options{SegmentSize: 64 << 10, MaxMessageSize: 16 << 10,
		QueueFileEntries: 100, RetentionDiskRatio: -1, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := New(st, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = strings.Repeat("x", 200)
	}
	publishTo(t, b, "t", subjects...)
	if n, err := st.ApplyRetention(time.Now().Add(100 * time.Hour)); n == 0 || err != nil {
		t.Fatalf("retention deleted %d segments: %v", n, err)
	}
	lo, _ := b.Offsets("t", 0)
	if lo == 0 {
		t.Fatal("the queue's minimum did not move")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := b.Read(ctx, "t", 0, 0, ReadOptions{Wait: time.Hour})
	if err != nil || !res.Moved || res.Next != lo || res.Min != lo || len(res.Messages) != 0 {
		t.Fatalf("read below the minimum %d: %+v, %v", lo, res, err)
	}
}
