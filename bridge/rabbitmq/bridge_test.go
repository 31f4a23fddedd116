package rabbitmq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/internal/rabbittest"
)

func TestOutbound(t *testing.T) {
	g := newRig(t, "devices.*.telemetry")
	r, f, q := g.r, g.f, g.q
	b := g.start(t, "out", Outbound, "devices", false, func(c *Config) { c.Filter = "+/telemetry" })

	const n = 100
	ids := map[string]string{} // body → core message id
	for i := range n {
		body := strconv.Itoa(i)
		m := &core.Message{Topic: "devices", Subject: fmt.Sprintf("%d/telemetry", i%10), Body: []byte(body),
			Keys: []string{"k" + body}, Properties: core.PropertiesOf(map[string]string{"unit": "C"})}
		res, err := f.broker.Publish(context.Background(), m, core.PublishOptions{Queue: core.QueueAuto, ShardKey: m.Subject})
		if err != nil {
			t.Fatal(err)
		}
		ids[body] = res.MessageID()
	}
	f.publish(t, "devices", "7/status", "filtered out", nil) // not the bridge's filter

	got := r.drain(q, n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("queue got %d messages, want %d", len(got), n)
	}
	for _, d := range got {
		i, _ := strconv.Atoi(string(d.Body))
		if want := fmt.Sprintf("devices.%d.telemetry", i%10); d.RoutingKey != want {
			t.Errorf("message %d: routing key %q, want %q", i, d.RoutingKey, want)
		}
		if d.MessageId != ids[string(d.Body)] {
			t.Errorf("message %d: id %q, want the core's %q", i, d.MessageId, ids[string(d.Body)])
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("message %d: delivery mode %d, want persistent", i, d.DeliveryMode)
		}
		h := d.Headers
		if h[HeaderSubject] != fmt.Sprintf("%d/telemetry", i%10) || h["unit"] != "C" || h[HeaderTopic] != "devices" {
			t.Errorf("message %d: headers %v", i, h)
		}
		if keys, _ := h[HeaderKeys].([]any); len(keys) != 1 || keys[0] != "k"+string(d.Body) {
			t.Errorf("message %d: keys header %v", i, h[HeaderKeys])
		}
		if h[HeaderHops] != int32(1) {
			t.Errorf("message %d: hops %v (%T), want 1", i, h[HeaderHops], h[HeaderHops])
		}
	}
	waitFor(t, 5*time.Second, "lag 0", func() bool { return b.Status().Lag == 0 })
	s := b.Status()
	if s.State != StateConnected || s.Forwarded != n {
		t.Fatalf("status %+v, want connected with %d forwarded", s, n)
	}
}

// TestOutboundWaitsForRabbitMQ starts a bridge (start: last) while its
// RabbitMQ is away: what is published meanwhile waits in the store and
// flows on, in order, when RabbitMQ is back; what was there before does not.
func TestOutboundWaitsForRabbitMQ(t *testing.T) {
	g := newRig(t, "devices.#")
	g.f.publish(t, "devices", "1/telemetry", "before", nil)
	waitFor(t, 5*time.Second, "the index to show it", func() bool { // "last" is the indexed end
		info, err := g.f.broker.Topic("devices")
		var n int64
		for _, q := range info.QueueStats {
			n += q.Max
		}
		return err == nil && n == 1
	})
	g.p.refusing.Store(true)
	b := g.start(t, "away", Outbound, "devices", true, func(c *Config) { c.Start = "last" })
	for i := range 3 {
		g.f.publish(t, "devices", "1/telemetry", fmt.Sprintf("0:%d", i), nil)
	}
	waitFor(t, 10*time.Second, "failed connects, and the lag", func() bool {
		s := b.Status()
		return s.Reconnects >= 2 && s.LastError != "" && s.Lag == 3
	})
	g.p.refusing.Store(false)
	got := g.r.drain(g.q, 3, 10*time.Second)
	checkStreams(t, deliveryBodies(got), 1, 3, b.Status().DuplicatesPossible)
}

func TestInbound(t *testing.T) {
	r := newRabbit(t)
	f := openFerry(t, t.TempDir())
	x := r.exchange()
	cfg := bridgeConfig("in", Inbound, r.url, "commands")
	cfg.Queue, cfg.DeclareQueue = r.name("q"), true
	cfg.Bindings = []Binding{{Exchange: x, Key: "commands.#"}}
	t.Cleanup(func() { r.deleteQueue(cfg.Queue) })
	b := startBridge(t, f, cfg)
	waitFor(t, 10*time.Second, "connected", func() bool { return b.Status().State == StateConnected })

	// A service's consumer group, as a native consumer would join it.
	filter, _ := route.ParseFilter("+/set")
	m, err := f.broker.Join("svc", "m1", core.MemberOptions{
		Subscriptions: []core.GroupSub{{Topic: "commands", Filter: filter}}, StartFrom: core.StartFrom{Kind: core.StartFirst}})
	if err != nil {
		t.Fatal(err)
	}
	r.publishAll(x, []string{"commands.7.get", "commands.42.set"}, []string{"get", "set"},
		amqp.Table{"prio": int32(3), HeaderKeys: []any{"cmd-1"}, "nested": amqp.Table{"a": "b"}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := m.Pull(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("got %d messages, want the one matching +/set", len(ds))
	}
	d := ds[0]
	if d.Subject != "42/set" || string(d.Body) != "set" || d.Properties.Get("prio") != "3" ||
		d.Properties.Get(HeaderOrigin) != Identity(r.url) || d.Properties.Get(PropAMQPMessageID) != "m-1" ||
		len(d.Keys) != 1 || d.Keys[0] != "cmd-1" {
		t.Fatalf("got subject %q body %q keys %v properties %v", d.Subject, d.Body, d.Keys, d.Properties)
	}
	if _, ok := d.Properties.Lookup("nested"); ok {
		t.Errorf("a table header became a property")
	}
	waitFor(t, 5*time.Second, "2 forwarded, and the queue's lag known to be 0", func() bool {
		s := b.Status()
		return s.Forwarded == 2 && s.Lag == 0
	})
}

// TestInboundLag: an inbound bridge's lag is the messages ready in its
// queue, as RabbitMQ counts them; unknown before it has asked.
func TestInboundLag(t *testing.T) {
	r := newRabbit(t)
	f := openFerry(t, t.TempDir())
	x := r.exchange()
	q := r.queue(QueueArgs, x, "commands.#")
	r.publishAll(x, []string{"commands.1.a", "commands.1.b", "commands.2.a"}, []string{"a", "b", "c"}, nil)
	cfg := bridgeConfig("lag", Inbound, r.url, "commands")
	cfg.Queue = q
	b, err := New(f.broker, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if lag := b.Status().Lag; lag != -1 {
		t.Fatalf("lag %d before asking, want -1 (unknown)", lag)
	}
	conn, ch := rabbittest.Channel(t, r.url)
	b.checkLag(context.Background(), conn, ch)
	if lag := b.Status().Lag; lag != 3 {
		t.Fatalf("lag %d, want the 3 messages in the queue", lag)
	}
	b.cfg.Queue = r.name("gone") // a queue that is not there: unknown again
	b.checkLag(context.Background(), conn, ch)
	if lag := b.Status().Lag; lag != -1 {
		t.Fatalf("lag %d for a missing queue, want -1", lag)
	}
}

// seqCheck checks what arrived of messages "stream:seq": every sequence
// number of every stream, each first seen in order (a message seen again
// is a duplicate, counted, and never follows a later one it had not seen).
func seqCheck(t *testing.T, bodies []string, streams, perStream int) (dups int) {
	t.Helper()
	next := make([]int, streams)
	for _, body := range bodies {
		a, b, _ := strings.Cut(body, ":")
		s, _ := strconv.Atoi(a)
		seq, _ := strconv.Atoi(b)
		switch {
		case seq < next[s]:
			dups++
		case seq == next[s]:
			next[s]++
		default:
			t.Fatalf("stream %d: %d arrived before %d (out of order, or lost)", s, seq, next[s])
		}
	}
	for s, n := range next {
		if n != perStream {
			t.Errorf("stream %d: %d of %d arrived", s, n, perStream)
		}
	}
	return dups
}

// rig is a core, an exchange, a queue bound to it with key, and a proxy
// to RabbitMQ that can cut connections.
type rig struct {
	r    *rabbit
	f    *ferry
	x, q string
	p    *proxy
}

func newRig(t *testing.T, key string) *rig { return newRigAt(t, newRabbit(t), key) }

// newRigAt is newRig on the RabbitMQ r, one the test started itself
// (rabbittest.StartNode) when it changes the RabbitMQ for every client.
func newRigAt(t *testing.T, r *rabbit, key string) *rig {
	g := &rig{r: r, f: openFerry(t, t.TempDir()), x: r.exchange(), p: newProxy(t, rabbitAddr(t, r.url))}
	g.q = r.queue(QueueArgs, g.x, key) // as an inbound bridge declares its own
	return g
}

// start starts a bridge on the rig's exchange (outbound) or queue
// (inbound), through the proxy when viaProxy; edit changes its config.
func (g *rig) start(t *testing.T, name string, dir Direction, topic string, viaProxy bool, edit func(*Config)) *Bridge {
	u := g.r.url
	if viaProxy {
		u = g.p.url(t, u)
	}
	cfg := bridgeConfig(name, dir, u, topic)
	cfg.Exchange, cfg.Queue = g.x, g.q
	if edit != nil {
		edit(&cfg)
	}
	return startBridge(t, g.f, cfg)
}

// cutWhileForwarding cuts b's connection n times, each once b is connected
// and has carried 1,000 more messages since the last cut, and waits for the
// reconnect each causes; the third cut is RabbitMQ's own (rabbitmqctl) when
// withCtl and it is there. It returns the cuts made.
func (g *rig) cutWhileForwarding(t *testing.T, b *Bridge, n int, withCtl bool) int {
	var last uint64
	for i := range n {
		waitFor(t, 60*time.Second, "forwarding", func() bool {
			s := b.Status()
			return s.State == StateConnected && s.Forwarded > last+1000
		})
		s := b.Status()
		last = s.Forwarded
		if i == 2 && withCtl && g.p.CloseFromRabbitMQ(t) {
			t.Log("rabbitmqctl close_connection")
		} else if g.p.Cut() == 0 {
			t.Fatal("connected, but no connection through the proxy to cut")
		}
		waitFor(t, 60*time.Second, "the reconnect", func() bool { return b.Status().Reconnects > s.Reconnects })
	}
	return n
}

// checkStreams runs seqCheck and holds the duplicates found to what the
// bridge counted as possible.
func checkStreams(t *testing.T, bodies []string, streams, perStream int, counted uint64) {
	t.Helper()
	dups := seqCheck(t, bodies, streams, perStream)
	t.Logf("%d received, %d duplicates, %d counted as possible", len(bodies), dups, counted)
	if uint64(dups) > counted {
		t.Errorf("%d duplicates, but the bridge counted only %d possible", dups, counted)
	}
}

func deliveryBodies(ds []amqp.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Body)
	}
	return out
}

// TestOutboundSurvivesCuts cuts the bridge's connection several times while
// 10,000 messages flow: none is lost, each stream keeps its order, and the
// duplicates are no more than the bridge counted.
func TestOutboundSurvivesCuts(t *testing.T) { outboundCuts(t, 1250, 4) }

// outboundCuts sends 8 streams of perStream messages through n cuts.
func outboundCuts(t *testing.T, perStream, n int) {
	g := newRig(t, "devices.#")
	f, b := g.f, g.start(t, "cuts", Outbound, "devices", true, nil)

	const streams = 8
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := range perStream {
			for s := range streams {
				f.publish(t, "devices", fmt.Sprintf("%d/telemetry", s), fmt.Sprintf("%d:%d", s, seq), nil)
			}
			if seq%100 == 99 {
				time.Sleep(20 * time.Millisecond) // spread the stream over the cuts
			}
		}
	}()
	cuts := g.cutWhileForwarding(t, b, n, true)
	<-done
	waitFor(t, 60*time.Second, "lag 0", func() bool { return b.Status().Lag == 0 })
	got := g.r.drain(g.q, streams*perStream, 120*time.Second)
	s := b.Status()
	t.Logf("%d cuts, %d reconnects", cuts, s.Reconnects)
	checkStreams(t, deliveryBodies(got), streams, perStream, s.DuplicatesPossible)
	if s.Reconnects < uint64(cuts) {
		t.Errorf("%d reconnects after %d cuts", s.Reconnects, cuts)
	}
}

// TestInboundSurvivesCuts does the same inbound: 10,000 messages published
// to RabbitMQ reach a consumer group in Ferry through several cuts.
func TestInboundSurvivesCuts(t *testing.T) {
	g := newRig(t, "commands.#")
	f, b := g.f, g.start(t, "incuts", Inbound, "commands", true, nil)

	const streams, perStream = 8, 1250
	var keys, bodies []string
	for seq := range perStream {
		for s := range streams {
			keys = append(keys, fmt.Sprintf("commands.%d.set", s))
			bodies = append(bodies, fmt.Sprintf("%d:%d", s, seq))
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(bodies); i += 1000 {
			g.r.publishAll(g.x, keys[i:i+1000], bodies[i:i+1000], nil)
		}
	}()
	cuts := g.cutWhileForwarding(t, b, 4, false)
	<-done

	m, err := f.broker.Join("svc", "m1", core.MemberOptions{
		Subscriptions: []core.GroupSub{{Topic: "commands"}}, StartFrom: core.StartFrom{Kind: core.StartFirst}})
	if err != nil {
		t.Fatal(err)
	}
	perSubject := map[string][]string{}
	seen := map[string]bool{}
	total := 0
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < len(bodies) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d", len(seen), len(bodies))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ds, err := m.Pull(ctx, 1000)
		cancel()
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			perSubject[d.Subject] = append(perSubject[d.Subject], string(d.Body))
			seen[string(d.Body)] = true
			total++
			if err := m.Ack(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	var all []string
	for _, bs := range perSubject { // order is per subject: one core queue each
		all = append(all, bs...)
	}
	s := b.Status()
	t.Logf("%d cuts, %d reconnects, %d stored", cuts, s.Reconnects, total)
	checkStreams(t, all, streams, perStream, s.DuplicatesPossible)
}

// TestOutboundFerryRestart closes and reopens Ferry (store, core, bridge)
// on its data directory twice while messages flow.
func TestOutboundFerryRestart(t *testing.T) {
	r := newRabbit(t)
	dir := t.TempDir()
	x := r.exchange()
	q := r.queue(nil, x, "devices.#")
	cfg := bridgeConfig("restart", Outbound, r.url, "devices")
	cfg.Exchange = x

	const streams, perStream = 8, 1250
	seq := 0
	var dupsPossible uint64
	for round := range 3 {
		f := openFerry(t, dir)
		b, err := New(f.broker, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		b.Start()
		last := perStream * (round + 1) / 3
		for ; seq < last; seq++ {
			for s := range streams {
				f.publish(t, "devices", fmt.Sprintf("%d/telemetry", s), fmt.Sprintf("%d:%d", s, seq), nil)
			}
		}
		if round < 2 { // stop mid-stream, with messages still in flight
			waitFor(t, 20*time.Second, "forwarding", func() bool { return b.Status().Forwarded > 1000 })
		} else {
			waitFor(t, 60*time.Second, "lag 0", func() bool { return b.Status().Lag == 0 })
		}
		b.Close()
		dupsPossible += b.Status().DuplicatesPossible
		f.close()
	}
	got := r.drain(q, streams*perStream, 60*time.Second)
	checkStreams(t, deliveryBodies(got), streams, perStream, dupsPossible)
}
