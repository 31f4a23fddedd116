package native

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/ferrymq/ferry/remoting"
)

// heartbeatReq is a consumer's heartbeat for group.
func heartbeatReq(t *testing.T, id, group string) *remoting.Command {
	t.Helper()
	body, err := json.Marshal(map[string]any{"clientID": id, "consumerDataSet": []any{map[string]any{
		"groupName": group, "subscriptionDataSet": []any{map[string]any{"topic": "T"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return remoting.NewRequest(remoting.HeartBeat, nil, body)
}

// notified dials s and counts the NOTIFY_CONSUMER_IDS_CHANGED of group it
// receives.
func notified(t *testing.T, s *Server, group string) (*remoting.Client, *atomic.Int32) {
	t.Helper()
	c, err := remoting.Dial(context.Background(), s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var n atomic.Int32
	c.HandleRequests(func(req *remoting.Command) *remoting.Command {
		if req.Code == remoting.NotifyConsumerIdsChanged && req.IsOneway() && req.Ext("consumerGroup") == group {
			n.Add(1)
		}
		return nil
	})
	return c, &n
}

// A change to a group's consumers is told to every connection that
// heartbeated for the group, and to no other.
func TestNotifyConsumerIdsChanged(t *testing.T) {
	s, _ := startServer(t, nil)
	c1, n1 := notified(t, s, "g")
	c2, n2 := notified(t, s, "g")
	other, nOther := notified(t, s, "g")
	call(t, c1, heartbeatReq(t, "c1", "g"))
	call(t, other, heartbeatReq(t, "o1", "h"))
	call(t, c2, heartbeatReq(t, "c2", "g"))
	if !waitFor(func() bool { return n1.Load() != 0 && n2.Load() != 0 }) {
		t.Fatalf("notifications of g: %d to the first member, %d to the second; want some to each", n1.Load(), n2.Load())
	}
	if nOther.Load() != 0 {
		t.Fatalf("%d notifications of g to a member of h only", nOther.Load())
	}
}

// However many changes a round gathered, a connection hears of each group
// once. The rounds are made by hand here: the window does not count.
func TestNotifyCoalesces(t *testing.T) {
	s, _ := startServer(t, nil)
	s.notify.mu.Lock()
	s.notify.running = true // no run goroutine: flush makes the rounds
	s.notify.mu.Unlock()
	sync := func(c *remoting.Client) { // what was sent to c before has been read
		call(t, c, remoting.NewRequest(remoting.GetConsumerListByGroup, remoting.Pairs("consumerGroup", "g"), nil))
	}
	c1, n1 := notified(t, s, "g")
	c2, n2 := notified(t, s, "g")
	other, nOther := notified(t, s, "g")
	call(t, c1, heartbeatReq(t, "c1", "g"))
	call(t, other, heartbeatReq(t, "o1", "h"))
	call(t, c2, heartbeatReq(t, "c2", "g"))
	s.notify.flush()
	waitSent(t, s)
	sync(c1)
	sync(c2)
	if n1.Load() != 1 || n2.Load() != 1 {
		t.Fatalf("two joins in one round: notifications %d and %d, want 1 each", n1.Load(), n2.Load())
	}

	n1.Store(0)
	n2.Store(0)
	c3, n3 := notified(t, s, "g")
	call(t, c3, heartbeatReq(t, "c3", "g"))
	call(t, c3, remoting.NewRequest(remoting.UnregisterClient, remoting.Pairs("clientID", "c3", "consumerGroup", "g"), nil))
	call(t, c3, heartbeatReq(t, "c3", "g"))
	c4, _ := notified(t, s, "g")
	call(t, c4, heartbeatReq(t, "c4", "g"))
	c4.Close() // its connection closes: it is gone too
	if !waitFor(func() bool { return len(s.b.ConsumerIDs("g")) == 3 }) {
		t.Fatalf("consumers of g: %v", s.b.ConsumerIDs("g"))
	}
	s.notify.flush()
	waitSent(t, s)
	for _, c := range []*remoting.Client{c1, c2, c3, other} {
		sync(c)
	}
	if n1.Load() != 1 || n2.Load() != 1 || n3.Load() != 1 || nOther.Load() != 0 {
		t.Fatalf("five changes of g in one round: notifications %d, %d, %d to g's members and %d to h's; want 1, 1, 1 and 0",
			n1.Load(), n2.Load(), n3.Load(), nOther.Load())
	}
}

// waitSent waits until the notifier's sends are written or queued.
func waitSent(t *testing.T, s *Server) {
	t.Helper()
	if !waitFor(s.sends.idle) {
		t.Fatal("notifications not sent")
	}
}
