package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSendAndReceive(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "orders", 4)
	p := f.newProducer(t, WithGroup("pg"))
	ctx := t.Context()

	m := &Message{Topic: "orders", Tag: "eu/paris", Keys: []string{"o-1", "c-7"}, Properties: map[string]string{"origin": "web"}, Body: []byte("first")}
	res, err := p.Send(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if res.MsgID == "" || res.OffsetMsgID == "" || res.Broker != "broker-a" || res.Topic != "orders" || res.QueueOffset != 0 {
		t.Fatalf("send result %+v", res)
	}
	async := make(chan error, 20)
	for i := range 20 {
		p.SendAsync(ctx, &Message{Topic: "orders", Body: fmt.Appendf(nil, "async %d", i)}, func(r SendResult, err error) {
			if err == nil && r.QueueOffset < 0 {
				err = fmt.Errorf("result %+v", r)
			}
			async <- err
		})
	}
	for range 20 {
		if err := <-async; err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := p.SendOneway(ctx, &Message{Topic: "orders", Body: fmt.Appendf(nil, "oneway %d", i)}); err != nil {
			t.Fatal(err)
		}
	}

	var r recorder
	c := f.startConsumer(t, "cg", "orders", "*", r.handle)
	eventually(t, 10*time.Second, func() bool { return r.len() >= 26 }, "26 messages")
	var got *MessageExt
	for _, x := range r.snapshot() {
		if string(x.Body) == "first" {
			got = x
		}
	}
	if got == nil || got.ID != res.MsgID || got.Topic != "orders" || got.Tag != "eu/paris" || !slices.Equal(got.Keys, m.Keys) ||
		got.Properties["origin"] != "web" || got.QueueID != res.QueueID || got.QueueOffset != 0 || got.Broker != "broker-a" ||
		got.BornTime.IsZero() || got.StoreTime.Before(got.BornTime.Add(-time.Second)) || got.ReconsumeTimes != 0 {
		t.Fatalf("received %+v for %+v", got, res)
	}
	if c.ID() == "" || strings.Count(c.ID(), "@") != 2 {
		t.Fatalf("client id %q", c.ID())
	}

	// Errors.
	if _, err := p.Send(ctx, &Message{Topic: "a/b"}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("invalid message: %v", err)
	}
	if _, err := p.Send(ctx, &Message{Topic: "orders", DelayLevel: 18, Body: []byte("x")}); err != nil {
		t.Fatalf("delayed send: %v", err)
	}
	c.Close()
	p.Close()
	if _, err := p.Send(ctx, m); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	done := make(chan error, 1)
	p.SendAsync(ctx, m, func(_ SendResult, err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("async send after close: %v", err)
	}
	noClientGoroutines(t)
}

func TestNoRoute(t *testing.T) {
	f := startFerry(t)
	f.brokers["broker-a"].Stop() // the NameServer forgets it at once
	p := f.newProducer(t, WithRetries(0))
	eventually(t, 5*time.Second, func() bool {
		_, err := p.Send(t.Context(), &Message{Topic: "nowhere", Body: []byte("x")})
		return errors.Is(err, ErrNoRoute)
	}, "ErrNoRoute")

	// A NameServer that cannot be reached.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p2, err := NewProducer(WithNameServers(addr), WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.Send(t.Context(), &Message{Topic: "t", Body: []byte("x")}); !errors.Is(err, ErrNoNameServer) {
		t.Fatalf("NameServer down: %v", err)
	}
}

// A topic no NameServer knows yet goes through TBW102's brokers, which
// create it.
func TestSendCreatesTopic(t *testing.T) {
	f := startFerry(t)
	f.waitForRoute(t, "TBW102", 1)
	p := f.newProducer(t)
	res, err := p.Send(t.Context(), &Message{Topic: "fresh", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if res.QueueID >= defaultTopicQueues {
		t.Fatalf("queue %d of a topic created on the fly", res.QueueID)
	}
	if _, err := f.brokers["broker-a"].core.Topic("fresh"); err != nil {
		t.Fatal(err)
	}
}

func TestProducerFailover(t *testing.T) {
	f := startFerry(t)
	b := f.addBroker(t, "broker-b")
	f.createTopic(t, "pay", 2)
	p := f.newProducer(t, WithRetries(2))
	seen := map[string]bool{}
	for i := range 8 {
		res, err := p.Send(t.Context(), &Message{Topic: "pay", Body: fmt.Appendf(nil, "%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		seen[res.Broker] = true
	}
	if !seen["broker-a"] || !seen["broker-b"] {
		t.Fatalf("round robin reached %v", seen)
	}
	b.Stop()
	// The route cached still has broker-b: sends to it fail and are retried
	// on broker-a.
	for i := range 8 {
		res, err := p.Send(t.Context(), &Message{Topic: "pay", Body: fmt.Appendf(nil, "after %d", i)})
		if err != nil {
			t.Fatalf("send %d with a broker down: %v", i, err)
		}
		if res.Broker != "broker-a" {
			t.Fatalf("sent to %s", res.Broker)
		}
	}
}

func TestGroupMemberLeavesMidStream(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "stream", 8)
	p := f.newProducer(t)
	var r [3]recorder
	var cs [3]*PushConsumer
	for i := range cs {
		cs[i] = f.startConsumer(t, "members", "stream", "*", r[i].handle)
	}
	eventually(t, 10*time.Second, func() bool {
		total := 0
		for _, c := range cs {
			n := c.ownedQueues("stream")
			if n < 2 {
				return false
			}
			total += n
		}
		return total == 8
	}, "8 queues shared by 3 members")

	const n = 400
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := p.Send(t.Context(), &Message{Topic: "stream", Body: fmt.Appendf(nil, "m%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, n/2)
	eventually(t, 10*time.Second, func() bool { return r[1].len() > 0 }, "member 2 to receive")
	if err := cs[1].Close(); err != nil {
		t.Fatal(err)
	}
	send(n/2, n)
	eventually(t, 20*time.Second, func() bool {
		got := map[string]bool{}
		for i := range r {
			for b := range r[i].bodies() {
				got[b] = true
			}
		}
		return len(got) == n
	}, "every message received at least once")
	eventually(t, 10*time.Second, func() bool { return cs[0].ownedQueues("stream")+cs[2].ownedQueues("stream") == 8 },
		"the two members left to own the 8 queues")
	for i := range r {
		if r[i].len() == 0 {
			t.Errorf("member %d received nothing", i+1)
		}
	}
}

func TestTagFilter(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "tagged", 8)
	p := f.newProducer(t)
	var r recorder
	f.startConsumer(t, "tags", "tagged", "TagA || TagC", r.handle)
	tags := []string{"TagA", "TagB", "TagC"}
	want := 0
	for i := range 30 {
		tag := tags[i%3]
		if tag != "TagB" {
			want++
		}
		if _, err := p.Send(t.Context(), &Message{Topic: "tagged", Tag: tag, Body: fmt.Appendf(nil, "%s %d", tag, i)}); err != nil {
			t.Fatal(err)
		}
	}
	// One more TagA message per queue: each comes after any TagB message of
	// its queue, so when they are all in, a TagB message would be too.
	for i := range 8 {
		if _, err := p.Send(t.Context(), &Message{Topic: "tagged", Tag: "TagA", Body: fmt.Appendf(nil, "tail %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool { return r.len() >= want+8 }, "%d messages", want+8)
	for _, m := range r.snapshot() {
		if m.Tag == "TagB" || !strings.HasPrefix(string(m.Body), m.Tag) && !strings.HasPrefix(string(m.Body), "tail") {
			t.Fatalf("received %q tagged %q", m.Body, m.Tag)
		}
	}
}

func TestRetryCountsReconsumeTimes(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "flaky", 2)
	p := f.newProducer(t)
	var mu sync.Mutex
	var attempts []*MessageExt
	handler := func(_ context.Context, m *MessageExt) error {
		if string(m.Body) != "flaky" {
			return nil
		}
		mu.Lock()
		attempts = append(attempts, m)
		n := len(attempts)
		mu.Unlock()
		switch n {
		case 1:
			panic("first attempt")
		case 2:
			return errors.New("second attempt")
		}
		return nil
	}
	f.startConsumer(t, "retrying", "flaky", "*", handler)
	res, err := p.Send(t.Context(), &Message{Topic: "flaky", Tag: "x", Body: []byte("flaky")})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) >= 3
	}, "3 attempts")
	mu.Lock()
	defer mu.Unlock()
	for i, m := range attempts[:3] {
		if m.ReconsumeTimes != i || m.Topic != "flaky" || m.Tag != "x" || m.ID != res.MsgID {
			t.Errorf("attempt %d: topic %q tag %q id %s reconsume %d (sent id %s)", i+1, m.Topic, m.Tag, m.ID, m.ReconsumeTimes, res.MsgID)
		}
	}
}

func TestSendBatch(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "batched", 4)
	p := f.newProducer(t)
	var msgs []*Message
	for i := range 10 {
		msgs = append(msgs, &Message{Topic: "batched", Tag: "b", Keys: []string{fmt.Sprint("k", i)}, Body: fmt.Appendf(nil, "%d", i)})
	}
	res, err := p.SendBatch(t.Context(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Split(res.MsgID, ",")
	if len(ids) != 10 || len(strings.Split(res.OffsetMsgID, ",")) != 10 || res.QueueOffset != 0 {
		t.Fatalf("batch result %+v", res)
	}
	var r recorder
	f.startConsumer(t, "batch", "batched", "*", r.handle)
	eventually(t, 10*time.Second, func() bool { return r.len() >= 10 }, "10 messages")
	got := r.snapshot()
	slices.SortFunc(got, func(a, b *MessageExt) int { return int(a.QueueOffset - b.QueueOffset) })
	for i, m := range got {
		if m.QueueID != res.QueueID || m.QueueOffset != int64(i) || string(m.Body) != fmt.Sprint(i) || m.ID != ids[i] || m.Keys[0] != fmt.Sprint("k", i) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	for name, batch := range map[string][]*Message{
		"empty":      nil,
		"two topics": {{Topic: "a"}, {Topic: "b"}},
		"delayed":    {{Topic: "a", DelayLevel: 2}},
		"two queues": {{Topic: "a", ShardingKey: "x"}, {Topic: "a"}},
	} {
		if _, err := p.SendBatch(t.Context(), batch); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestShardingKeyKeepsOrder(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "ordered", 8)
	p := f.newProducer(t)
	keys := []string{"acct-1", "acct-2", "acct-3", "acct-4", "acct-5"}
	queueOf := map[string]messageQueue{}
	for i := range 100 {
		k := keys[i%len(keys)]
		res, err := p.Send(t.Context(), &Message{Topic: "ordered", ShardingKey: k, Body: fmt.Appendf(nil, "%s %03d", k, i)})
		if err != nil {
			t.Fatal(err)
		}
		q := messageQueue{res.Broker, res.QueueID}
		if prev, ok := queueOf[k]; ok && prev != q {
			t.Fatalf("key %s went to %v then %v", k, prev, q)
		}
		queueOf[k] = q
	}
	// One handler at a time: each queue's messages are handled in order.
	var r recorder
	f.startConsumer(t, "orderly", "ordered", "*", r.handle, WithConcurrency(1))
	eventually(t, 10*time.Second, func() bool { return r.len() >= 100 }, "100 messages")
	byKey := map[string][]string{}
	for _, m := range r.snapshot() {
		k, _, _ := strings.Cut(string(m.Body), " ")
		if q := (messageQueue{m.Broker, m.QueueID}); q != queueOf[k] {
			t.Fatalf("%q received from %v, sent to %v", m.Body, q, queueOf[k])
		}
		byKey[k] = append(byKey[k], string(m.Body))
	}
	for k, bodies := range byKey {
		if !slices.IsSorted(bodies) || len(bodies) != 20 {
			t.Fatalf("key %s received out of order: %v", k, bodies)
		}
	}
}

func TestOffsetsSurviveConsumerRestart(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "durable", 4)
	p := f.newProducer(t)
	for i := range 20 {
		if _, err := p.Send(t.Context(), &Message{Topic: "durable", Body: fmt.Appendf(nil, "old %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var r1 recorder
	c1 := f.startConsumer(t, "restart", "durable", "*", r1.handle)
	eventually(t, 10*time.Second, func() bool { return len(r1.bodies()) == 20 }, "20 old messages")
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	var r2 recorder
	c2 := f.startConsumer(t, "restart", "durable", "*", r2.handle, WithConsumeFrom(ConsumeFromFirst))
	for i := range 10 {
		if _, err := p.Send(t.Context(), &Message{Topic: "durable", Body: fmt.Appendf(nil, "new %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		n := 0
		for b := range r2.bodies() {
			if strings.HasPrefix(b, "new") {
				n++
			}
		}
		return n == 10
	}, "10 new messages")
	if err := c2.Close(); err != nil { // waits for handlers: nothing is in flight after
		t.Fatal(err)
	}
	for b := range r2.bodies() {
		if strings.HasPrefix(b, "old") {
			t.Fatalf("the restarted consumer read %q again", b)
		}
	}
	// The broker has the offsets: 20 + 10 over 4 queues.
	var total int64
	for q := range 4 {
		off, ok := f.brokers["broker-a"].core.CommittedOffset("restart", "durable", q)
		if !ok {
			t.Fatalf("no committed offset for queue %d", q)
		}
		total += off
	}
	if total != 30 {
		t.Fatalf("committed offsets add up to %d, want 30", total)
	}
	p.Close()
	noClientGoroutines(t)
}

// A consumer that starts from the last offset skips what was there.
func TestConsumeFromLast(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "live", 2)
	p := f.newProducer(t)
	if _, err := p.Send(t.Context(), &Message{Topic: "live", Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	// The broker indexes what it stored in the background: wait until the
	// queues' last offsets count the message.
	st := f.brokers["broker-a"].core
	eventually(t, 5*time.Second, func() bool {
		_, hi0 := st.Offsets("live", 0)
		_, hi1 := st.Offsets("live", 1)
		return hi0+hi1 == 1
	}, "the message indexed")
	var r recorder
	c := f.startConsumer(t, "late", "live", "*", r.handle, WithConsumeFrom(ConsumeFromLast))
	eventually(t, 10*time.Second, func() bool { return c.ownedQueues("live") == 2 }, "2 queues owned")
	// The pulls start once their start offset is known: wait for it.
	eventually(t, 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for k, pq := range c.queues {
			if _, ok := pq.offsets.committed(); k.topic == "live" && !ok {
				return false
			}
		}
		return true
	}, "start offsets")
	if _, err := p.Send(t.Context(), &Message{Topic: "live", Body: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return r.len() >= 1 }, "1 message")
	c.Close()
	if b := r.bodies(); len(b) != 1 || b["after"] != 1 {
		t.Fatalf("received %v", b)
	}
}

func TestDeadLetterAfterMaxRetries(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "doomed", 1)
	p := f.newProducer(t)
	var mu sync.Mutex
	var reconsumes []int
	f.startConsumer(t, "strict", "doomed", "*", func(_ context.Context, m *MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		reconsumes = append(reconsumes, m.ReconsumeTimes)
		return errors.New("always")
	}, WithMaxRetries(2))
	if _, err := p.Send(t.Context(), &Message{Topic: "doomed", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	st := f.brokers["broker-a"].core
	eventually(t, 20*time.Second, func() bool {
		_, hi := st.Offsets("%DLQ%strict", 0)
		return hi == 1
	}, "the message in the dead-letter topic")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(reconsumes, []int{0, 1, 2}) {
		t.Fatalf("attempts with reconsume times %v, want [0 1 2]", reconsumes)
	}
}

func TestConcurrencyBound(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "busy", 8)
	p := f.newProducer(t)
	for i := range 60 {
		if _, err := p.Send(t.Context(), &Message{Topic: "busy", Body: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	running, most, done := 0, 0, 0
	f.startConsumer(t, "bounded", "busy", "*", func(context.Context, *MessageExt) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // some work, so that handlers overlap
		mu.Lock()
		running--
		done++
		mu.Unlock()
		return nil
	}, WithConcurrency(3), WithPullBatch(4))
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done >= 60
	}, "60 messages")
	if most > 3 {
		t.Fatalf("%d handlers at once, with a concurrency of 3", most)
	}
}
