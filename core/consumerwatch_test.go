package core

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// The watchers hear of every change to a group's consumers, of both kinds,
// and of nothing else: a heartbeat of a known client changes nothing.
func TestOnConsumersChange(t *testing.T) {
	cfg := testConfig(t)
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	b := openBroker(t, t.TempDir(), cfg)
	var mu sync.Mutex
	var got []string
	b.OnConsumersChange(func(g string) {
		mu.Lock()
		got = append(got, g)
		mu.Unlock()
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	expect := func(what string, want ...string) {
		t.Helper()
		if g := take(); !slices.Equal(g, want) {
			t.Fatalf("%s: changes %q, want %q", what, g, want)
		}
	}

	if err := b.ClientHeartbeat("g", "c1", []string{"t"}); err != nil {
		t.Fatal(err)
	}
	expect("first heartbeat", "g")
	b.ClientHeartbeat("g", "c1", []string{"t"})
	expect("second heartbeat")
	b.ClientGone("g", "c1")
	expect("client gone", "g")
	b.ClientGone("g", "c1")
	expect("client gone again")

	m := join(t, b.Broker, "h", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	expect("member joins", "h")
	join(t, b.Broker, "h", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	expect("member joins again")
	m.Leave()
	expect("member leaves", "h")

	b.ClientHeartbeat("g", "c2", nil)
	expect("another client", "g")
	waitFor(t, 10*time.Second, "a silent client dropped", func() bool { return len(b.ConsumerIDs("g")) == 0 })
	expect("silent client dropped", "g")
}
