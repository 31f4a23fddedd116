package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// keyedLog records, in the order handled, the bodies "key seq" handled
// successfully, across consumers.
type keyedLog struct {
	mu      sync.Mutex
	byKey   map[string][]int
	failed  map[string]bool // bodies failed once already
	retried map[string]int  // body → ReconsumeTimes of its successful attempt
}

func newKeyedLog() *keyedLog {
	return &keyedLog{byKey: map[string][]int{}, failed: map[string]bool{}, retried: map[string]int{}}
}

// handle fails the first attempt of every 7th message.
func (l *keyedLog) handle(_ context.Context, m *MessageExt) error {
	time.Sleep(time.Millisecond) // some work: a member may leave mid-message
	l.mu.Lock()
	defer l.mu.Unlock()
	body := string(m.Body)
	k, n, _ := strings.Cut(body, " ")
	seq, _ := strconv.Atoi(n)
	if seq%7 == 3 && !l.failed[body] {
		l.failed[body] = true
		return errors.New("first attempt fails")
	}
	l.byKey[k] = append(l.byKey[k], seq)
	if m.ReconsumeTimes > 0 {
		l.retried[body] = m.ReconsumeTimes
	}
	return nil
}

func (l *keyedLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.byKey {
		n += len(s)
	}
	return n
}

// check fails t unless every key's messages 0..perKey-1 were handled once,
// in order, and, when inPlace, the failed ones were retried in place (a
// message whose queue moved while it waited for its retry starts over at
// its new owner).
func (l *keyedLog) check(t *testing.T, perKey int, inPlace bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, seqs := range l.byKey {
		want := make([]int, perKey)
		for i := range want {
			want[i] = i
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("key %s handled in the order %v", k, seqs)
		}
	}
	for body := range l.failed {
		if inPlace && l.retried[body] != 1 {
			t.Errorf("%q: handled with reconsume times %d after one failure", body, l.retried[body])
		}
	}
}

func sendKeyed(t *testing.T, p *Producer, topic string, keys []string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		for _, k := range keys {
			if _, err := p.Send(t.Context(), &Message{Topic: topic, ShardingKey: k, Body: fmt.Appendf(nil, "%s %d", k, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestOrderedConsumption(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "seq", 4)
	p := f.newProducer(t)
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	const perKey = 30
	sendKeyed(t, p, "seq", keys, 0, perKey)
	l := newKeyedLog()
	c := f.startConsumer(t, "seq-group", "seq", "*", l.handle, WithOrdered(), withIntervals(intervals{lockRenew: 200 * time.Millisecond}))
	eventually(t, 20*time.Second, func() bool { return l.count() >= perKey*len(keys) }, "%d messages", perKey*len(keys))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	l.check(t, perKey, true)
	// Close released the locks: another client takes the queues at once.
	c2, err := NewPushConsumer("seq-group", f.opts(WithOrdered())...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Subscribe("seq", "*", l.handle); err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return c2.ownedQueues("seq") == 4 }, "the 4 queues locked by a new member")
	c2.Close()
	p.Close()
	noClientGoroutines(t)
}

func TestOrderedMemberLeavesMidStream(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "seq2", 4)
	p := f.newProducer(t)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	const perKey = 60
	l := newKeyedLog()
	c1 := f.startConsumer(t, "pair", "seq2", "*", l.handle, WithOrdered())
	c2 := f.startConsumer(t, "pair", "seq2", "*", l.handle, WithOrdered())
	eventually(t, 10*time.Second, func() bool { return c1.ownedQueues("seq2") == 2 && c2.ownedQueues("seq2") == 2 },
		"the 4 queues shared by 2 members")
	sendKeyed(t, p, "seq2", keys, 0, perKey/2)
	eventually(t, 10*time.Second, func() bool { return l.count() > 20 }, "some messages handled")
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("a member left after %d of %d messages were handled", l.count(), perKey*len(keys))
	sendKeyed(t, p, "seq2", keys, perKey/2, perKey)
	eventually(t, 20*time.Second, func() bool { return l.count() >= perKey*len(keys) }, "%d messages", perKey*len(keys))
	eventually(t, 10*time.Second, func() bool { return c1.ownedQueues("seq2") == 4 }, "the member left to own the 4 queues")
	c1.Close()
	l.check(t, perKey, false)
}

func TestOrderedDeadLetter(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "seq3", 1)
	p := f.newProducer(t)
	var mu sync.Mutex
	var attempts []int
	var after []string
	f.startConsumer(t, "strict-seq", "seq3", "*", func(_ context.Context, m *MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Body) == "bad" {
			attempts = append(attempts, m.ReconsumeTimes)
			return errors.New("always")
		}
		after = append(after, string(m.Body))
		return nil
	}, WithOrdered(), WithMaxRetries(2))
	for _, b := range []string{"bad", "next"} {
		if _, err := p.Send(t.Context(), &Message{Topic: "seq3", Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	st := f.brokers["broker-a"].core
	eventually(t, 10*time.Second, func() bool {
		_, hi := st.Offsets("%DLQ%strict-seq", 0)
		mu.Lock()
		defer mu.Unlock()
		return hi == 1 && len(after) == 1
	}, "the message dead-lettered and the next one handled")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{0, 1, 2}) {
		t.Fatalf("attempts with reconsume times %v, want [0 1 2]", attempts)
	}
}

func TestBroadcasting(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "news", 4)
	p := f.newProducer(t)
	const n = 40
	var r [3]recorder
	var failOnce sync.Once
	var cs [3]*PushConsumer
	for i := range cs {
		h := r[i].handle
		if i == 0 {
			h = func(ctx context.Context, m *MessageExt) error {
				failed := false
				if string(m.Body) == "m7" {
					failOnce.Do(func() { failed = true })
				}
				if failed {
					return errors.New("first attempt fails")
				}
				return r[0].handle(ctx, m)
			}
		}
		cs[i] = f.startConsumer(t, "everyone", "news", "*", h, WithBroadcasting())
	}
	for _, c := range cs {
		eventually(t, 10*time.Second, func() bool { return c.ownedQueues("news") == 4 }, "each member to read the 4 queues")
	}
	for i := range n {
		if _, err := p.Send(t.Context(), &Message{Topic: "news", Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range r {
		eventually(t, 10*time.Second, func() bool { return len(r[i].bodies()) == n }, "member %d to receive the %d messages", i+1, n)
	}
	for _, c := range cs {
		c.Close()
	}
	p.Close()
	for i := range r {
		for b, k := range r[i].bodies() {
			if k != 1 {
				t.Errorf("member %d received %q %d times", i+1, b, k)
			}
		}
	}
	for _, m := range r[0].snapshot() {
		if string(m.Body) == "m7" && m.ReconsumeTimes != 1 {
			t.Errorf("m7 retried with reconsume times %d", m.ReconsumeTimes)
		}
	}
	// Nothing was committed at the broker.
	for q := range 4 {
		if off, ok := f.brokers["broker-a"].core.CommittedOffset("everyone", "news", q); ok && off != 0 {
			t.Errorf("queue %d: offset %d committed at the broker", q, off)
		}
	}
	noClientGoroutines(t)
}

func TestPullConsumer(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "pulled", 2)
	p := f.newProducer(t)
	const n = 20
	for i := range n {
		if _, err := p.Send(t.Context(), &Message{Topic: "pulled", Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := NewPullConsumer("puller", f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx := t.Context()
	qs, err := pc.Queues(ctx, "pulled")
	if err != nil || len(qs) != 2 || qs[0] != (Queue{"pulled", "broker-a", 0}) || qs[1].ID != 1 {
		t.Fatalf("queues %v, %v", qs, err)
	}
	got := map[string]bool{}
	next := map[Queue]int64{}
	for len(got) < n {
		for _, q := range qs {
			if _, ok, err := pc.CommittedOffset(ctx, q); err != nil || ok {
				t.Fatalf("committed offset before any commit: %v, %v", ok, err)
			}
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			res, err := pc.Pull(pctx, q, next[q], 3)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Messages) > 3 {
				t.Fatalf("%d messages for a max of 3", len(res.Messages))
			}
			for i, m := range res.Messages {
				if m.QueueOffset != next[q]+int64(i) || m.Broker != "broker-a" || m.QueueID != q.ID {
					t.Fatalf("message %+v at offset %d", m, next[q]+int64(i))
				}
				got[string(m.Body)] = true
			}
			next[q] = res.Next
		}
	}
	for _, q := range qs {
		if err := pc.CommitOffset(ctx, q, next[q]); err != nil {
			t.Fatal(err)
		}
	}

	// An offset past the end moved.
	res, err := pc.Pull(ctx, qs[0], next[qs[0]]+100, 10)
	if !errors.Is(err, ErrOffsetMoved) || res.Next != next[qs[0]] || res.Max != next[qs[0]] {
		t.Fatalf("pull past the end: %+v, %v", res, err)
	}
	// A pull at the end waits for the next message.
	pulled := make(chan PullResult, 1)
	go func() {
		res, err := pc.Pull(ctx, qs[1], next[qs[1]], 10)
		if err != nil {
			t.Error(err)
		}
		pulled <- res
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case res := <-pulled:
		t.Fatalf("pull at the end returned at once: %+v", res)
	default:
	}
	for i := range 2 { // round robin: one goes to queue 1
		if _, err := p.Send(ctx, &Message{Topic: "pulled", Body: fmt.Appendf(nil, "late %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if res := <-pulled; len(res.Messages) == 0 || !strings.HasPrefix(string(res.Messages[0].Body), "late") {
		t.Fatalf("long poll returned %+v", res)
	}

	// A new member of the group sees the commits.
	pc2, err := NewPullConsumer("puller", f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		off, ok, err := pc2.CommittedOffset(ctx, q)
		if err != nil || !ok || off != next[q] {
			t.Fatalf("queue %d: committed %d, %v, %v; want %d", q.ID, off, ok, err, next[q])
		}
	}
	pc2.Close()
	pc.Close()
	if _, err := pc.Pull(ctx, qs[0], 0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("pull after close: %v", err)
	}
	if _, err := NewPullConsumer("puller", WithOrdered()); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("ordered pull consumer: %v", err)
	}
	p.Close()
	noClientGoroutines(t)
}

func TestDelayedDelivery(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "later", 2)
	p := f.newProducer(t)
	var mu sync.Mutex
	received := map[string]time.Time{}
	f.startConsumer(t, "patient", "later", "*", func(_ context.Context, m *MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		received[string(m.Body)] = time.Now()
		return nil
	})
	at := time.Now().Add(500 * time.Millisecond)
	res, err := p.Send(t.Context(), &Message{Topic: "later", Body: []byte("at"), DeliverAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if res.QueueOffset != -1 {
		t.Errorf("a delayed message's send result has queue offset %d", res.QueueOffset)
	}
	sent := time.Now()
	if _, err := p.Send(t.Context(), &Message{Topic: "later", Body: []byte("level"), DelayLevel: 2}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) == 2
	}, "the 2 delayed messages")
	mu.Lock()
	defer mu.Unlock()
	// DeliverAt travels in milliseconds.
	if got := received["at"]; got.Before(at.Truncate(time.Millisecond)) {
		t.Errorf("delivered %v before its time", at.Sub(got))
	}
	if got := received["level"]; got.Before(sent.Add(5 * time.Millisecond)) {
		t.Errorf("level 2 (5 ms here) delivered after %v", got.Sub(sent))
	}
}

func TestOffsetsSurviveBrokerRestart(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "kept", 4)
	p := f.newProducer(t)
	for i := range 20 {
		if _, err := p.Send(t.Context(), &Message{Topic: "kept", Body: fmt.Appendf(nil, "old %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var r1 recorder
	c1 := f.startConsumer(t, "survivor", "kept", "*", r1.handle)
	eventually(t, 10*time.Second, func() bool { return len(r1.bodies()) == 20 }, "20 old messages")
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	p.Close()

	b := f.restartBroker(t, "broker-a")
	f.waitForRouteData(t, "kept", func(rd remoting.RouteData) bool {
		return len(rd.BrokerDatas) == 1 && rd.BrokerDatas[0].BrokerAddrs[0] == b.addr
	}, "the route of kept to the restarted broker")
	var total int64
	for q := range 4 {
		off, _ := b.core.CommittedOffset("survivor", "kept", q)
		total += off
	}
	if total != 20 {
		t.Fatalf("committed offsets after the restart add up to %d, want 20", total)
	}

	var r2 recorder
	c2 := f.startConsumer(t, "survivor", "kept", "*", r2.handle)
	p2 := f.newProducer(t)
	for i := range 10 {
		if _, err := p2.Send(t.Context(), &Message{Topic: "kept", Body: fmt.Appendf(nil, "new %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return len(r2.bodies()) >= 10 }, "10 new messages")
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	for body := range r2.bodies() {
		if !strings.HasPrefix(body, "new") {
			t.Errorf("read %q again after the broker restarted", body)
		}
	}
}
