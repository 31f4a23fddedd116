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
	"github.com/ferrymq/ferry/internal/rabbittest"
)

// TestLoopPrevention wires an outbound and an inbound bridge to the same
// RabbitMQ in a loop: a message goes out once and is not sent back.
func TestLoopPrevention(t *testing.T) {
	g := newRig(t, "devices.#")
	r, f, observer := g.r, g.f, g.q
	ob := g.start(t, "loop-out", Outbound, "devices", false, nil)
	inQueue := r.name("q")
	t.Cleanup(func() { r.deleteQueue(inQueue) })
	ib := g.start(t, "loop-in", Inbound, "devices", false, func(c *Config) {
		c.Queue, c.DeclareQueue = inQueue, true
		c.Bindings = []Binding{{Exchange: g.x, Key: "devices.#"}}
	})
	waitFor(t, 10*time.Second, "both connected", func() bool {
		return ob.Status().State == StateConnected && ib.Status().State == StateConnected
	})

	for i := range 5 {
		f.publish(t, "devices", "42/telemetry", strconv.Itoa(i), nil)
	}
	// Over the hop limit: dropped, not sent.
	f.publish(t, "devices", "42/telemetry", "far", map[string]string{HeaderHops: strconv.Itoa(DefaultMaxHops)})

	waitFor(t, 10*time.Second, "the loop to come back in and be dropped", func() bool {
		return ib.Status().Forwarded == 5 && ob.Status().LoopsDropped == 6
	})
	got := r.drain(observer, 5, 5*time.Second)
	if len(got) != 5 {
		t.Fatalf("observer got %d messages, want 5 (each once)", len(got))
	}
	if s := ob.Status(); s.Forwarded != 5 {
		t.Fatalf("outbound forwarded %d, want 5", s.Forwarded)
	}
}

// deadLetters publishes n messages for bridge b and reads its dead-letter
// topic until want are there, each set aside for reason.
func deadLetters(t *testing.T, f *ferry, b *Bridge, n, want int, reason string) []*core.Delivery {
	t.Helper()
	for i := range n {
		f.publish(t, "devices", "1/telemetry", strconv.Itoa(i), nil)
	}
	got := dlq(t, f, b.cfg.DeadLetterTopic, want)
	if len(got) != want {
		t.Fatalf("dead-letter topic has %d messages, want %d", len(got), want)
	}
	for _, d := range got {
		if !strings.Contains(d.Properties.Get(PropDeadLetterReason), reason) {
			t.Errorf("reason %q, want it to say %q", d.Properties.Get(PropDeadLetterReason), reason)
		}
	}
	return got
}

// dlq reads a bridge's dead-letter topic.
func dlq(t *testing.T, f *ferry, topic string, want int) []*core.Delivery {
	t.Helper()
	m, err := f.broker.Join("dlq-reader", "r", core.MemberOptions{
		Subscriptions: []core.GroupSub{{Topic: topic}}, StartFrom: core.StartFrom{Kind: core.StartFirst}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*core.Delivery
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ds, _ := m.Pull(ctx, 100)
		cancel()
		out = append(out, ds...)
	}
	return out
}

// TestReturnDeadLetter: messages nobody's queue is bound for come back
// (mandatory) and go to the bridge's dead-letter topic.
func TestReturnDeadLetter(t *testing.T) {
	r := newRabbit(t)
	f := openFerry(t, t.TempDir())
	cfg := bridgeConfig("ret", Outbound, r.url, "devices")
	cfg.Exchange, cfg.OnReturn = r.exchange(), DeadLetter // no queue bound
	b := startBridge(t, f, cfg)
	got := deadLetters(t, f, b, 3, 3, "returned")
	for i, d := range got {
		if string(d.Body) != strconv.Itoa(i) || d.Properties.Get(HeaderTopic) != "devices" || d.Subject != "1/telemetry" {
			t.Errorf("dead letter %d: body %q subject %q properties %v", i, d.Body, d.Subject, d.Properties)
		}
	}
	waitFor(t, 5*time.Second, "counted", func() bool { s := b.Status(); return s.DeadLettered == 3 && s.Lag == 0 })
}

// TestReturnRetry: with the retry policy a returned message is sent again,
// in order, until a queue is bound for it.
func TestReturnRetry(t *testing.T) {
	r := newRabbit(t)
	f := openFerry(t, t.TempDir())
	x := r.exchange()
	cfg := bridgeConfig("retry", Outbound, r.url, "devices")
	cfg.Exchange, cfg.OnReturn = x, Retry
	b := startBridge(t, f, cfg)
	for i := range 3 {
		f.publish(t, "devices", "1/telemetry", fmt.Sprintf("0:%d", i), nil)
	}
	waitFor(t, 10*time.Second, "a retry", func() bool {
		s := b.Status()
		return s.Reconnects >= 1 && strings.Contains(s.LastError, "returned")
	})
	if s := b.Status(); s.Forwarded != 0 || s.Lag != 3 {
		t.Fatalf("before the binding: %+v", s)
	}
	q := r.queue(nil, x, "devices.#")
	got := r.drain(q, 3, 10*time.Second)
	bodies := make([]string, len(got))
	for i, d := range got {
		bodies[i] = string(d.Body)
	}
	seqCheck(t, bodies, 1, 3)
}

// TestNackDeadLetter: a queue that refuses publishes when full nacks them;
// the dead-letter policy sets them aside.
func TestNackDeadLetter(t *testing.T) {
	r := newRabbit(t)
	f := openFerry(t, t.TempDir())
	x := r.exchange()
	r.queue(amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"}, x, "devices.#")
	cfg := bridgeConfig("nack", Outbound, r.url, "devices")
	cfg.Exchange, cfg.OnNack = x, DeadLetter
	b := startBridge(t, f, cfg)
	deadLetters(t, f, b, 5, 3, "nacked")
	waitFor(t, 5*time.Second, "counted", func() bool { s := b.Status(); return s.DeadLettered == 3 && s.Forwarded == 2 })
}

// TestBlocked raises RabbitMQ's memory alarm: the bridge shows blocked and
// holds its messages; blocked past blocked-timeout, it reconnects (and is
// blocked again); it carries them on when the alarm clears.
//
// The alarm blocks every publisher on the RabbitMQ, so it is raised on one
// the test starts for itself (its own node name, ports and data directory),
// never on a RabbitMQ that may serve something else on the machine.
func TestBlocked(t *testing.T) {
	node := rabbittest.StartNode(t)
	g := newRigAt(t, &rabbit{t: t, url: node.URL}, "devices.#")
	r, f, q := g.r, g.f, g.q
	b := g.start(t, "blocked", Outbound, "devices", false, func(c *Config) { c.BlockedTimeout = time.Second })
	waitFor(t, 10*time.Second, "connected", func() bool { return b.Status().State == StateConnected })

	was := node.Ctl(t, "eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
	if _, err := strconv.ParseFloat(was, 64); err != nil {
		t.Skipf("memory watermark %q is not a plain ratio: not touching it", was)
	}
	restore := func() { node.Ctl(t, "set_vm_memory_high_watermark", was) }
	t.Cleanup(restore)
	node.Ctl(t, "set_vm_memory_high_watermark", "0.0000001")

	f.publish(t, "devices", "1/telemetry", "0:0", nil)
	waitFor(t, 20*time.Second, "blocked", func() bool { return b.Status().State == StateBlocked })
	waitFor(t, 20*time.Second, "a reconnect after blocked-timeout", func() bool {
		s := b.Status()
		return s.Reconnects >= 1 && strings.Contains(s.LastError, "blocked too long")
	})
	if s := b.Status(); s.Forwarded != 0 {
		t.Fatalf("forwarded %d while blocked", s.Forwarded)
	}
	restore()
	waitFor(t, 20*time.Second, "unblocked and forwarded", func() bool {
		s := b.Status()
		return s.State == StateConnected && s.Forwarded >= 1 && s.Lag == 0
	})
	checkStreams(t, deliveryBodies(r.drain(q, 1, 5*time.Second)), 1, 1, b.Status().DuplicatesPossible)
}

// TestInboundRejectsTooLarge: a message the store can never take is
// rejected to RabbitMQ (its own dead-lettering applies); the next goes on.
func TestInboundRejectsTooLarge(t *testing.T) {
	g := newRig(t, "commands.#")
	b := g.start(t, "big", Inbound, "commands", false, nil)
	big := strings.Repeat("x", 4<<20+1) // over the store's default 4 MiB
	g.r.publishAll(g.x, []string{"commands.1.set", "commands.1.set"}, []string{big, "small"}, nil)
	waitFor(t, 20*time.Second, "one rejected, one stored", func() bool {
		s := b.Status()
		return s.Rejected == 1 && s.Forwarded == 1
	})
	if s := b.Status(); s.State != StateConnected || s.Reconnects != 0 {
		t.Fatalf("status %+v: a poison message must not cost a reconnect", s)
	}
}
