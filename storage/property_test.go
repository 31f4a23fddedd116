package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
)

// TestRandomSizes appends messages of random sizes into stores of random
// segment, message and index-file sizes, reopening at random points, and
// checks after each reopen that every queue reads back exactly what was sent.
func TestRandomSizes(t *testing.T) {
	ctx := context.Background()
	rounds := 12
	if testing.Short() {
		rounds = 3
	}
	for seed := int64(1); seed <= int64(rounds); seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			o := testOptions(t)
			o.MaxMessageSize = 64 + r.Intn(8<<10)
			minSeg := int64(maxRecordSize(o.MaxMessageSize) + headerSize)
			o.SegmentSize = minSeg + r.Int63n(200<<10)
			o.QueueFileEntries = 1 + r.Int63n(50)
			if r.Intn(2) == 0 {
				o.FlushMode = FlushSync
			}
			t.Logf("segment %d, max message %d, queue file %d, %s", o.SegmentSize, o.MaxMessageSize, o.QueueFileEntries, o.FlushMode)
			dir := t.TempDir()
			s := openTest(t, dir, o)
			sent := map[queueKey][]*Message{}
			for i := 0; i < 1500; {
				batch := make([]*Message, 1+r.Intn(8))
				for j := range batch {
					batch[j] = &Message{
						Topic:   fmt.Sprintf("t%d", r.Intn(3)),
						QueueID: r.Intn(3),
						Subject: fmt.Sprintf("s/%d", r.Intn(100)),
						Body:    make([]byte, r.Intn(o.MaxMessageSize-20)),
					}
					r.Read(batch[j].Body)
					if r.Intn(4) == 0 {
						batch[j].Keys = []string{fmt.Sprint("k", r.Intn(50))}
					}
				}
				n, err := s.AppendBatch(ctx, batch)
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				for _, m := range batch[:n] {
					k := queueKey{m.Topic, m.QueueID}
					if m.QueueOffset != int64(len(sent[k])) {
						t.Fatalf("%v: queue offset %d, want %d", k, m.QueueOffset, len(sent[k]))
					}
					sent[k] = append(sent[k], m)
				}
				i += n
				if r.Intn(200) == 0 {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openTest(t, dir, o)
					checkSent(t, s, sent)
				}
			}
			// Too large by one byte is refused, and nothing is written.
			big := &Message{Topic: "t0", Body: make([]byte, o.MaxMessageSize)}
			before := appendedEnd(s)
			if err := s.Append(ctx, big); !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("append of an oversized message: %v, want ErrMessageTooLarge", err)
			}
			if appendedEnd(s) != before {
				t.Fatal("an oversized message moved the log")
			}
			waitIndexed(t, s)
			checkSent(t, s, sent)
		})
	}
}

func checkSent(t *testing.T, s *Store, sent map[queueKey][]*Message) {
	t.Helper()
	for k, want := range sent {
		got := readAll(t, s, k.topic, k.id, 0)
		if len(got) != len(want) {
			t.Fatalf("%v: read %d, want %d", k, len(got), len(want))
		}
		for i := range got {
			if err := sameMessage(&got[i], want[i]); err != nil {
				t.Fatalf("%v offset %d: %v", k, i, err)
			}
		}
	}
}
