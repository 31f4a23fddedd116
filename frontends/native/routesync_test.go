package native

import (
	"context"
	"sync"
	"testing"

	"github.com/ferrymq/ferry/remoting"
)

// A send that creates its topic gives it the queues the client asks for
// (defaultTopicQueueNums) and waits for the route to be registered; a
// group's first heartbeat on a connection waits for its retry route.
func TestSendCreatesTopicAndWaitsForRoute(t *testing.T) {
	s, c := startServer(t, nil)
	var mu sync.Mutex
	var syncs int
	s.SyncRoutesWith(func(context.Context) error {
		mu.Lock()
		syncs++
		mu.Unlock()
		return nil
	})
	synced := func() int {
		mu.Lock()
		defer mu.Unlock()
		return syncs
	}
	req := sendV2("fresh", "a", []byte("x"), 0)
	req.Set("c", "TBW102")
	req.Set("d", "4")
	if resp := call(t, c, req); resp.Code != remoting.Success {
		t.Fatalf("send: %v", resp)
	}
	if info, err := s.b.Topic("fresh"); err != nil || info.Queues != 4 {
		t.Fatalf("auto-created with %d queues (%v), want the 4 asked", info.Queues, err)
	}
	if synced() != 1 {
		t.Fatalf("%d route syncs for a send that created its topic, want 1", synced())
	}
	call(t, c, sendV2("fresh", "a", []byte("y"), 0))
	if synced() != 1 {
		t.Fatalf("a send to an existing topic waited for the routes")
	}
	hb := remoting.NewRequest(remoting.HeartBeat, nil, []byte(`{"clientID":"c1","consumerDataSet":[{"groupName":"g1","subscriptionDataSet":[{"topic":"fresh"}]}]}`))
	for range 2 {
		if resp := call(t, c, hb); resp.Code != remoting.Success {
			t.Fatalf("heartbeat: %v", resp)
		}
	}
	if synced() != 2 {
		t.Fatalf("%d route syncs after a new group's heartbeats, want 2 (the first heartbeat only)", synced())
	}
}
