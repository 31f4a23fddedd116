package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ferrymq/ferry/namesrv"
)

// ClusterBrokers asks every NameServer: a broker one of them lists says
// which; a NameServer that does not answer is an error beside the list.
func TestClusterBrokers(t *testing.T) {
	f := startFerry(t)
	f.addBroker(t, "broker-b")
	f.waitForRoute(t, "TBW102", 2)

	empty := namesrv.New(namesrv.Options{Logger: testLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go empty.Serve(ln)
	t.Cleanup(func() { empty.Close() })
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	a, err := NewAdmin(WithNameServers(f.ns, ln.Addr().String(), goneAddr), WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	brokers, err := a.ClusterBrokers(context.Background())
	if err == nil || errors.Is(err, ErrNoNameServer) {
		t.Fatalf("one NameServer of three down: %v, want an error naming it, not ErrNoNameServer", err)
	}
	if len(brokers) != 2 {
		t.Fatalf("brokers %+v", brokers)
	}
	for i, name := range []string{"broker-a", "broker-b"} {
		b := brokers[i]
		if b.Name != name || b.Cluster != "DefaultCluster" || b.ID != 0 || b.Role() != "master" || b.Addr != f.brokers[name].addr ||
			len(b.NameServers) != 1 || b.NameServers[0] != f.ns || b.LastSeen.IsZero() || time.Since(b.LastSeen) > time.Minute {
			t.Errorf("broker %d: %+v", i, b)
		}
	}

	down, err := NewAdmin(WithNameServers(goneAddr), WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if _, err := down.ClusterBrokers(context.Background()); !errors.Is(err, ErrNoNameServer) {
		t.Fatalf("no NameServer answers: %v, want ErrNoNameServer", err)
	}
}

// A broker that leaves the route takes its queues out of the group's
// allocation at once, not at the next rebalance tick: a pull that finds
// its queue's broker gone asks for a rebalance.
func TestConsumerRebalancesWhenABrokerLeaves(t *testing.T) {
	f := startFerry(t)
	f.addBroker(t, "broker-b")
	f.createTopic(t, "Leaves", 2)
	c := f.startConsumer(t, "leaves", "Leaves", "*", func(context.Context, *MessageExt) error { return nil },
		withIntervals(intervals{rebalance: time.Hour, routeRefresh: time.Hour}))
	// owned counts the queues owned per broker, of the topic and, with
	// retry, of the group's retry topic too.
	owned := func(retry bool) map[string]int {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[string]int{}
		for k := range c.queues {
			if k.topic == "Leaves" || retry {
				out[k.Broker]++
			}
		}
		return out
	}
	if o := owned(false); o["broker-a"] != 2 || o["broker-b"] != 2 {
		t.Fatalf("owned at start: %v, want the 2 queues of each broker", o)
	}
	f.brokers["broker-b"].Stop()
	eventually(t, 10*time.Second, func() bool { o := owned(true); return o["broker-b"] == 0 && owned(false)["broker-a"] == 2 },
		"broker-b's queues, of the topic and the retry topic, dropped before the hourly rebalance")
}
