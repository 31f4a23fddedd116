package core

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// A purge moves every group reading the topic to the end of its queues;
// groups of other topics, and the log, are left as they were.
func TestPurgeTopic(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 2)
	b.CreateTopic("other", 1)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	o := join(t, b.Broker, "h", "m", MemberOptions{Subscriptions: subs("other", "*")})
	publishN(t, b.Broker, "t", 5, PublishOptions{Queue: 0}, nil)
	publishN(t, b.Broker, "other", 3, PublishOptions{Queue: 0}, nil)
	ds, err := m.Pull(context.Background(), 1) // one in flight, four waiting
	if err != nil || len(ds) != 1 {
		t.Fatalf("pull: %d %v", len(ds), err)
	}
	moved, err := b.PurgeTopic("t")
	if err != nil || !slices.Equal(moved, []string{"g"}) {
		t.Fatalf("PurgeTopic: %v %v, want [g]", moved, err)
	}
	m.Ack(ds[0])
	info, err := b.Group("g")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range info.Queues {
		if q.Lag != 0 {
			t.Fatalf("after purge, queue %d lag %d", q.Queue, q.Lag)
		}
	}
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, nil)
	if got := pullN(t, m, 1); string(got[0].Body) != "0" || got[0].QueueOffset != 5 {
		t.Fatalf("after purge got %q at %d, want the new message at 5", got[0].Body, got[0].QueueOffset)
	}
	if got := pullN(t, o, 3); len(got) != 3 {
		t.Fatalf("the other topic's group got %d of 3", len(got))
	}
	if _, err := b.PurgeTopic("nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("purge of no topic: %v", err)
	}
}
