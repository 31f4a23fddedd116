package core

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// scaledLevels is RocketMQ's delay schedule scaled down 1000 times (level 3,
// the first retry, is 10 ms).
var scaledLevels = func() []time.Duration {
	out := make([]time.Duration, len(DefaultDelayLevels))
	for i, d := range DefaultDelayLevels {
		out[i] = d / 1000
	}
	return out
}()

func testConfig(t testing.TB) Config {
	return Config{
		AutoCreateTopics:  true,
		DelayLevels:       scaledLevels,
		OrderlyRetryDelay: 20 * time.Millisecond,
		HandoverTimeout:   2 * time.Second,
		FlushInterval:     50 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

type testBroker struct {
	*Broker
	dir   string
	store *storage.Store
}

func openBroker(t testing.TB, dir string, cfg Config) *testBroker {
	t.Helper()
	return openBrokerOn(t, dir, cfg, storage.Options{SegmentSize: 8 << 20})
}

// openBrokerOn is openBroker over a store opened with so (its Logger is
// cfg's).
func openBrokerOn(t testing.TB, dir string, cfg Config, so storage.Options) *testBroker {
	t.Helper()
	so.Logger = cfg.Logger
	st, err := storage.Open(dir, so)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(st, cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	tb := &testBroker{Broker: b, dir: dir, store: st}
	t.Cleanup(func() { tb.close(t) })
	return tb
}

func (tb *testBroker) close(t testing.TB) {
	if err := tb.Broker.Close(); err != nil {
		t.Error(err)
	}
	tb.store.Close()
}

func publishN(t testing.TB, b *Broker, topic string, n int, o PublishOptions, subject func(i int) string) []PublishResult {
	t.Helper()
	var out []PublishResult
	for i := 0; i < n; i++ {
		m := &Message{Topic: topic, Body: []byte(fmt.Sprint(i))}
		if subject != nil {
			m.Subject = subject(i)
		}
		res, err := b.Publish(context.Background(), m, o)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		out = append(out, res)
	}
	return out
}

func mustFilter(t testing.TB, expr string) route.Filter {
	t.Helper()
	f, err := route.ParseFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// collector records what handlers saw.
type collector struct {
	mu   sync.Mutex
	seen map[string]int // body → times
	by   map[string][]string
	ch   chan struct{}
}

func newCollector() *collector {
	return &collector{seen: map[string]int{}, by: map[string][]string{}, ch: make(chan struct{}, 1)}
}

func (c *collector) add(who string, d *Delivery) {
	c.mu.Lock()
	c.seen[string(d.Body)]++
	c.by[who] = append(c.by[who], string(d.Body))
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.seen {
		n += k
	}
	return n
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// waitFor waits until cond holds, checking on each collector event and at
// least every 10 ms, for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func consume(t testing.TB, m *Member, c *collector, o PushOptions, h func(*Delivery) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Consume(ctx, func(_ context.Context, d *Delivery) error {
			if h != nil {
				if err := h(d); err != nil {
					return err
				}
			}
			c.add(m.ID(), d)
			return nil
		}, o)
	}()
	return func() { cancel(); <-done }
}

// A publish says whether a live subscription was handed the message, which
// may keep its body: a front-end reuses a body's memory only when none was.
func TestPublishResultRetained(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	ctx := context.Background()
	res, err := b.Publish(ctx, &Message{Topic: "held", Body: []byte("a")}, PublishOptions{Queue: QueueAuto})
	if err != nil || res.Retained {
		t.Fatalf("publish with no subscription: %v, retained %v", err, res.Retained)
	}
	var got []*Message
	sub, err := b.Subscribe("held", route.Filter{}, func(m *Message) { got = append(got, m) })
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.Publish(ctx, &Message{Topic: "held", Body: []byte("b")}, PublishOptions{Queue: QueueAuto})
	if err != nil || !res.Retained || len(got) != 1 {
		t.Fatalf("publish with a subscription: %v, retained %v, handed %d", err, res.Retained, len(got))
	}
	res, err = b.Publish(ctx, &Message{Topic: "other", Body: []byte("c")}, PublishOptions{Queue: QueueAuto})
	if err != nil || res.Retained {
		t.Fatalf("publish to a topic no one subscribed to: %v, retained %v", err, res.Retained)
	}
	sub.Close()
}
