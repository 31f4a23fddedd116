package core

import (
	"context"
	"testing"
	"time"

	"github.com/ferrymq/ferry/storage"
)

func TestSendBackWalksRetriesIntoDeadLetters(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	res := publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, nil)[0]
	off := res.LogOffset
	for attempt := 1; attempt <= 3; attempt++ {
		if err := b.SendBack(context.Background(), "g", off, 0, 2, nil); err != nil {
			t.Fatal(err)
		}
		if attempt == 3 {
			break
		}
		retry := RetryTopic("g")
		var m Message
		waitFor(t, 5*time.Second, "the retry", func() bool {
			_, hi := b.store.Offsets(retry, 0)
			if hi < int64(attempt) {
				return false
			}
			r, err := b.store.Read(retry, 0, int64(attempt-1), storage.ReadOptions{MaxCount: 1})
			if err != nil || len(r.Messages) == 0 {
				return false
			}
			m = r.Messages[0]
			return true
		})
		if m.ReconsumeTimes != int32(attempt) || m.Properties.Get(propOrigTopic) != "t" {
			t.Fatalf("retry %d: reconsume %d, props %v", attempt, m.ReconsumeTimes, m.Properties)
		}
		off = m.LogOffset
	}
	waitFor(t, 5*time.Second, "the dead letter", func() bool { _, hi := b.store.Offsets(DeadLetterTopic("g"), 0); return hi == 1 })
}
