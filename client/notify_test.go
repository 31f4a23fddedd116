package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A member joining or leaving makes the others rebalance at once, told by
// the broker (NOTIFY_CONSUMER_IDS_CHANGED), not at their next periodic
// rebalance (hourly here): once the queues are shared, each message comes
// to exactly one member.
func TestMembersRebalanceWhenTheGroupChanges(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "Joins", 8)
	hourly := withIntervals(intervals{rebalance: time.Hour})
	var mu sync.Mutex
	got := map[string][]int{} // body → the members that got it
	handler := func(member int) func(context.Context, *MessageExt) error {
		return func(_ context.Context, m *MessageExt) error {
			mu.Lock()
			defer mu.Unlock()
			got[string(m.Body)] = append(got[string(m.Body)], member)
			return nil
		}
	}
	a := f.startConsumer(t, "joins", "Joins", "*", handler(0), hourly)
	if n := a.ownedQueues("Joins"); n != 8 {
		t.Fatalf("the first member owns %d queues, want 8", n)
	}
	b := f.startConsumer(t, "joins", "Joins", "*", handler(1), hourly)
	eventually(t, 20*time.Second, func() bool { return a.ownedQueues("Joins") == 4 && b.ownedQueues("Joins") == 4 },
		"the first member to give half its queues to the second before the hourly rebalance")

	p := f.newProducer(t)
	const n = 200
	for i := range n {
		if _, err := p.Send(t.Context(), &Message{Topic: "Joins", Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == n }, "every message received")
	mu.Lock()
	perMember := [2]int{}
	for body, members := range got {
		if len(members) != 1 {
			t.Errorf("%s delivered to members %v", body, members)
		}
		perMember[members[0]]++
	}
	mu.Unlock()
	if perMember[0] == 0 || perMember[1] == 0 {
		t.Errorf("messages per member %v: both own queues", perMember)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool { return a.ownedQueues("Joins") == 8 },
		"the member left to take every queue back before the hourly rebalance")
}
