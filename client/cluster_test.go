package client

import (
	"context"
	"errors"
	"net"
	"sync"
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

// A broker that left a topic's route and comes back is used again within
// seconds, by producers and consumers, though their routes refresh only
// hourly here: a route that lost a broker is asked for every second until
// it is back.
func TestRestartedBrokerIsUsedAgain(t *testing.T) {
	f := startFerry(t)
	f.addBroker(t, "broker-b")
	f.createTopic(t, "Comeback", 2)
	hourly := withIntervals(intervals{rebalance: time.Hour, routeRefresh: time.Hour})
	var mu sync.Mutex
	from := map[string]int{} // messages received per broker
	c := f.startConsumer(t, "comeback", "Comeback", "*", func(_ context.Context, m *MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		from[m.Broker]++
		return nil
	}, hourly)
	p := f.newProducer(t, hourly)
	send := func() SendResult {
		t.Helper()
		res, err := p.Send(t.Context(), &Message{Topic: "Comeback", Body: []byte("m")})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	send() // the producer's route is known: both brokers

	b := f.brokers["broker-b"]
	b.Stop()
	f.waitForRoute(t, "Comeback", 1)
	for range 4 { // one may fail over from broker-b
		if res := send(); res.Broker != "broker-a" {
			t.Fatalf("sent to %s, gone", res.Broker)
		}
	}
	eventually(t, 10*time.Second, func() bool { return c.ownedQueues("Comeback") == 2 }, "the consumer to drop broker-b's queues")

	f.startBroker(t, "broker-b", b.dir) // on another port
	f.waitForRoute(t, "Comeback", 2)
	mu.Lock()
	before := from["broker-b"]
	mu.Unlock()
	eventually(t, 20*time.Second, func() bool { return send().Broker == "broker-b" },
		"a send to the restarted broker before the hourly route refresh")
	eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return from["broker-b"] > before },
		"a message of the restarted broker consumed before the hourly route refresh")
	if n := c.ownedQueues("Comeback"); n != 4 {
		t.Fatalf("the consumer owns %d queues, want both brokers' 4", n)
	}
	watched := func(r *routes) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.watches["Comeback"] != nil
	}
	eventually(t, 10*time.Second, func() bool { return !watched(p.routes) && !watched(c.routes) },
		"the routes back to the normal refresh once the broker is back")
}
