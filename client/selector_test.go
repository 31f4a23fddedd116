package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// TestSQL92Subscription: a consumer subscribing with a SQL92 selector gets
// exactly the messages whose properties match, filtered by the broker; a
// bad selector fails Start with the broker's reason and its position.
func TestSQL92Subscription(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "orders", 4)
	var r recorder
	c, err := NewPushConsumer("sql", f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("orders", "amount > 100 AND region IN ('eu','us')", r.handle, SQL92()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	p := f.newProducer(t)
	want := map[string]int{}
	for i := range 40 {
		region := []string{"eu", "us", "ap"}[i%3]
		m := &Message{Topic: "orders", Body: []byte(strconv.Itoa(i)),
			Properties: map[string]string{"amount": strconv.Itoa(i * 10), "region": region}}
		if i == 39 {
			m.Properties = nil // no amount, no region: never matches
		}
		if _, err := p.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		if i*10 > 100 && region != "ap" && i != 39 {
			want[strconv.Itoa(i)] = 1
		}
	}
	eventually(t, 10*time.Second, func() bool { return r.len() >= len(want) }, "%d matching messages", len(want))
	// A message the filter wrongly let through would have come with them:
	// the queues are consumed in order, and message 39 came last.
	eventually(t, 10*time.Second, func() bool { return c.handledUpTo("orders") == 40 }, "the 40 messages handled or passed over")
	if got := r.bodies(); len(got) != len(want) || r.len() != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	} else {
		for b := range want {
			if got[b] != 1 {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}

	bad, err := NewPushConsumer("sql-bad", f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Subscribe("orders", "amount > 100 AND region IN ('eu' 'us')", r.handle, SQL92()); err != nil {
		t.Fatal(err)
	}
	err = bad.Start(ctx)
	if !errors.Is(err, ErrInvalidSubscription) || !errors.Is(err, remoting.ErrSubscriptionInvalid) || !strings.Contains(err.Error(), "position 34") {
		t.Fatalf("Start with a bad SQL92 selector: %v", err)
	}
	if err := bad.Subscribe("orders", " ", r.handle, SQL92()); !errors.Is(err, ErrInvalidSubscription) {
		t.Fatalf("an empty SQL92 selector: %v", err)
	}
}

// handledUpTo sums, over the queues of topic c owns, the offsets below
// which every message was handled or passed over by the broker's filter.
func (c *PushConsumer) handledUpTo(topic string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for k, pq := range c.queues {
		if off, ok := pq.offsets.committed(); ok && k.topic == topic {
			n += off
		}
	}
	return n
}
