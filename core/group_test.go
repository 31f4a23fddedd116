package core

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/storage"
)

func join(t testing.TB, b *Broker, group, id string, o MemberOptions) *Member {
	t.Helper()
	m, err := b.Join(group, id, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func subs(topic, filter string) []GroupSub {
	return []GroupSub{{Topic: topic}}
}

func TestAllocate(t *testing.T) {
	for n := 0; n <= 9; n++ {
		for m := 1; m <= 5; m++ {
			seen := make([]int, n)
			for i := 0; i < m; i++ {
				lo, hi := allocate(n, m, i)
				for q := lo; q < hi; q++ {
					seen[q]++
				}
				if hi-lo > (n+m-1)/m {
					t.Errorf("n=%d m=%d: member %d gets %d queues", n, m, i, hi-lo)
				}
			}
			for q, c := range seen {
				if c != 1 {
					t.Errorf("n=%d m=%d: queue %d assigned %d times", n, m, q, c)
				}
			}
		}
	}
}

func TestPullLongPolls(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 2)
	m := join(t, b.Broker, "g", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ds, err := m.Pull(ctx, 10); !errors.Is(err, context.DeadlineExceeded) || len(ds) != 0 {
		t.Fatalf("pull on empty queues: %d, %v; want a timeout", len(ds), err)
	}
	got := make(chan []*Delivery)
	go func() {
		ds, _ := m.Pull(context.Background(), 10)
		got <- ds
	}()
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 1}, nil)
	select {
	case ds := <-got:
		if len(ds) != 1 || string(ds[0].Body) != "0" || ds[0].Attempt != 1 {
			t.Fatalf("pull woke with %v", ds)
		}
		if err := m.Ack(ds[0]); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting pull was not woken by a publish")
	}
	info, _ := b.Group("g")
	for _, q := range info.Queues {
		if q.Topic == "t" && q.Queue == 1 && (q.Committed != 1 || q.Lag != 0) {
			t.Fatalf("after ack: %+v", q)
		}
	}
}

// chanWaker signals its channel on each wake.
type chanWaker chan struct{}

func (w chanWaker) Wake(bool) {
	select {
	case w <- struct{}{}:
	default:
	}
}

// TryPull never waits: on empty queues it watches them with the Waker, which
// a publish wakes once; after Leave nothing wakes it.
func TestTryPullWakes(t *testing.T) {
	b, m, w := watchingMember(t, 2)
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 1}, nil)
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("a publish did not wake the watcher")
	}
	ds, drained, _, err := m.TryPull(10, w)
	if err != nil || len(ds) != 1 || string(ds[0].Body) != "0" || !drained {
		t.Fatalf("after the wake: %d deliveries, drained %v, %v", len(ds), drained, err)
	}
	if err := m.Ack(ds[0]); err != nil {
		t.Fatal(err)
	}
	if ds, _, _, _ := m.TryPull(10, w); len(ds) != 0 {
		t.Fatalf("%d deliveries past the end", len(ds))
	}
	// More than max: not drained until the last is read.
	publishN(t, b.Broker, "t", 5, PublishOptions{Queue: 0}, nil)
	b.store.KickDispatch()
	waitFor(t, 5*time.Second, "queue 0 to hold 5", func() bool { _, max := b.store.Offsets("t", 0); return max == 5 })
	select {
	case <-w: // woken by them
	case <-time.After(5 * time.Second):
		t.Fatal("five publishes did not wake the watcher")
	}
	if ds, drained, _, _ := m.TryPull(3, w); len(ds) != 3 || drained {
		t.Fatalf("3 of 5: %d deliveries, drained %v; want 3, not drained", len(ds), drained)
	}
	if ds, drained, _, _ := m.TryPull(3, w); len(ds) != 2 || !drained {
		t.Fatalf("the last 2 of 5: %d deliveries, drained %v; want 2, drained", len(ds), drained)
	}
	changed := m.Changed()
	m.Leave()
	select {
	case <-changed:
	default:
		t.Fatal("Leave did not close the Changed channel")
	}
	expectNoWake(t, b, w, "Leave", 0, 1)
}

// watchingMember is member m1 of group g on topic t (of queues queues,
// empty), whose TryPull left w on them.
func watchingMember(t *testing.T, queues int) (*testBroker, *Member, chanWaker) {
	t.Helper()
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", queues)
	m := join(t, b.Broker, "g", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	w := make(chanWaker, 1)
	if ds, drained, at, err := m.TryPull(10, w); err != nil || len(ds) != 0 || !drained || !at.IsZero() {
		t.Fatalf("empty queues: %d deliveries, drained %v, retry at %v, %v", len(ds), drained, at, err)
	}
	return b, m, w
}

// expectNoWake publishes to queues of topic t, closes b (which indexes
// and wakes everything published) and fails if w was woken.
func expectNoWake(t *testing.T, b *testBroker, w chanWaker, after string, queues ...int) {
	t.Helper()
	for _, q := range queues {
		publishN(t, b.Broker, "t", 1, PublishOptions{Queue: q}, nil)
	}
	b.Close()
	select {
	case <-w:
		t.Fatal("woken after " + after)
	default:
	}
}

// Deleting a group takes its members' Wakers off the queues.
func TestDeleteGroupUnwatches(t *testing.T) {
	b, _, w := watchingMember(t, 1)
	if err := b.DeleteGroup("g"); err != nil {
		t.Fatal(err)
	}
	expectNoWake(t, b, w, "the group was deleted", 0)
}

func TestClusteringMemberLeavesMidStream(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 8)
	c := newCollector()
	var stops []func()
	var members []*Member
	for i := 0; i < 3; i++ {
		m := join(t, b.Broker, "g", fmt.Sprint("m", i), MemberOptions{Subscriptions: subs("t", "*")})
		members = append(members, m)
		stops = append(stops, consume(t, m, c, PushOptions{}, nil))
	}
	info, _ := b.Group("g")
	total := 0
	for _, mi := range info.Members {
		total += len(mi.Queues)
		if len(mi.Queues) < 2 { // 8 queues over 3: 3, 3, 2; the retry queue to one
			t.Fatalf("assignment %+v", info.Members)
		}
	}
	if total != 9 {
		t.Fatalf("%d queues assigned, want 9: %+v", total, info.Members)
	}
	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishN(t, b.Broker, "t", n, PublishOptions{Queue: QueueAuto}, nil)
	}()
	waitFor(t, 10*time.Second, "a third of the messages", func() bool { return c.distinct() > n/3 })
	stops[1]()         // stop handling mid-stream…
	members[1].Leave() // …and leave: its queues go to the others
	<-done
	waitFor(t, 20*time.Second, "every message", func() bool { return c.distinct() == n })
	for _, s := range []func(){stops[0], stops[2]} {
		s()
	}
	c.mu.Lock()
	dups := 0
	for _, k := range c.seen {
		dups += k - 1
	}
	c.mu.Unlock()
	t.Logf("%d messages, %d delivered twice (at least once)", n, dups)
	info, _ = b.Group("g")
	if len(info.Members) != 2 {
		t.Fatalf("members after leave: %+v", info.Members)
	}
	for _, q := range info.Queues {
		if q.Lag != 0 || q.InFlight != 0 {
			t.Fatalf("queue not drained: %+v", q)
		}
	}
}

func TestJoinBeforeTopicExists(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	c := newCollector()
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("later", "*")})
	defer consume(t, m, c, PushOptions{}, nil)()
	publishN(t, b.Broker, "later", 20, PublishOptions{Queue: QueueAuto}, nil) // auto-creates it
	waitFor(t, 5*time.Second, "the messages of the topic created after the join", func() bool { return c.distinct() == 20 })
}

func TestAckTimeoutRetriesAStuckDelivery(t *testing.T) {
	cfg := testConfig(t)
	cfg.AckTimeout = 200 * time.Millisecond
	b := openBroker(t, t.TempDir(), cfg)
	b.CreateTopic("t", 1)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, nil)
	first := pullN(t, m, 1)[0] // and never acked
	again := pullN(t, m, 1)[0]
	if string(again.Body) != string(first.Body) || again.Attempt != 2 {
		t.Fatalf("after the ack timeout got %q attempt %d, want the same message, attempt 2", again.Body, again.Attempt)
	}
	if err := m.Ack(first); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("late ack: %v, want ErrStaleDelivery", err)
	}
	m.Ack(again)
}

func TestBroadcasting(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 4)
	c := newCollector()
	for i := 0; i < 3; i++ {
		m := join(t, b.Broker, "g", fmt.Sprint("m", i), MemberOptions{Mode: Broadcasting, Subscriptions: subs("t", "*")})
		defer consume(t, m, c, PushOptions{}, nil)()
	}
	if _, err := b.Join("g", "x", MemberOptions{Mode: Clustering}); !errors.Is(err, ErrGroupMode) {
		t.Fatalf("clustering member in a broadcasting group: %v", err)
	}
	publishN(t, b.Broker, "t", 200, PublishOptions{Queue: QueueAuto}, nil)
	waitFor(t, 10*time.Second, "every member gets every message", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.by["m0"]) == 200 && len(c.by["m1"]) == 200 && len(c.by["m2"]) == 200
	})
}

func TestFilteredGroup(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("devices", 2)
	c := newCollector()
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: []GroupSub{{Topic: "devices", Filter: mustFilter(t, "+/telemetry")}}})
	defer consume(t, m, c, PushOptions{}, nil)()
	publishN(t, b.Broker, "devices", 100, PublishOptions{Queue: QueueAuto}, func(i int) string {
		if i%2 == 0 {
			return fmt.Sprint(i, "/telemetry")
		}
		return fmt.Sprint(i, "/status")
	})
	waitFor(t, 5*time.Second, "50 telemetry messages", func() bool { return c.distinct() == 50 })
	waitFor(t, 5*time.Second, "no lag: filtered-out messages count as consumed", func() bool {
		info, _ := b.Group("g")
		for _, q := range info.Queues {
			if q.Lag != 0 {
				return false
			}
		}
		return true
	})
}

// A filtered read looks at a bounded number of index entries; a pull
// whose read stops there with nothing matched reads on, rather than wait
// for a publish that may never come.
func TestPullReadsPastAFilteredScan(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: []GroupSub{{Topic: "t", Filter: mustFilter(t, "match")}}})
	const skipped = 70_000 // more than a filtered read scans
	msgs := make([]*Message, 0, 1000)
	for i := 0; i <= skipped; i++ {
		subject := "other"
		if i == skipped {
			subject = "match"
		}
		msgs = append(msgs, &Message{Topic: "t", Subject: subject, Body: []byte(fmt.Sprint(i))})
		if len(msgs) == cap(msgs) || i == skipped {
			if _, err := b.PublishBatch(context.Background(), msgs, PublishOptions{Queue: 0}); err != nil {
				t.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := m.Pull(ctx, 10)
	if err != nil || len(ds) != 1 || string(ds[0].Body) != fmt.Sprint(skipped) {
		t.Fatalf("pull: %d deliveries, %v; want the one message that matches", len(ds), err)
	}
	w := make(chanWaker, 1)
	if ds, drained, _, err := m.TryPull(10, w); err != nil || len(ds) != 0 || !drained {
		t.Fatalf("after it: %d deliveries, drained %v, %v", len(ds), drained, err)
	}
}

func TestRetryIntoDeadLetters(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRetries = 3
	b := openBroker(t, t.TempDir(), cfg)
	b.CreateTopic("t", 1)
	var mu sync.Mutex
	var attempts []int
	var times []time.Time
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	defer consume(t, m, newCollector(), PushOptions{}, func(d *Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Topic != "t" || string(d.Body) != "0" {
			t.Errorf("retry delivered as %s %q, want topic t", d.Topic, d.Body)
		}
		attempts = append(attempts, d.Attempt)
		times = append(times, time.Now())
		return errors.New("handler failed")
	})()
	orig := publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, nil)[0]
	dlq := DeadLetterTopic("g")
	waitFor(t, 10*time.Second, "the message in the dead-letter topic", func() bool {
		_, hi := b.store.Offsets(dlq, 0)
		return hi == 1
	})
	mu.Lock()
	if fmt.Sprint(attempts) != "[1 2 3 4]" {
		t.Fatalf("attempts %v, want 1 2 3 4 (MaxRetries 3)", attempts)
	}
	// Delays grow: levels 3, 4, 5 scaled are 10, 30, 60 ms.
	for i, want := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond} {
		if got := times[i+1].Sub(times[i]); got < want {
			t.Errorf("retry %d came after %v, before its delay %v", i+1, got, want)
		}
	}
	mu.Unlock()
	res, err := b.store.Read(dlq, 0, 0, storage.ReadOptions{})
	if err != nil || len(res.Messages) != 1 {
		t.Fatalf("dead letters: %v %v", res, err)
	}
	dm := &res.Messages[0]
	if b.OriginalID(dm) != orig.MessageID() || dm.Properties.Get(propOrigTopic) != "t" || dm.Properties.Get(propDLQReason) != "handler failed" {
		t.Fatalf("dead letter: id %s (want %s), props %v", b.OriginalID(dm), orig.MessageID(), dm.Properties)
	}
	if _, err := b.Topic(dlq); err != nil {
		t.Fatalf("the dead-letter topic is not listed: %v", err)
	}

	// Re-sent, it comes back to the group under its origin topic, first attempt.
	n, next, err := b.ResendDeadLetters(context.Background(), "g", 0, 10)
	if err != nil || n != 1 || next != 1 {
		t.Fatalf("resend: %d %d %v", n, next, err)
	}
	waitFor(t, 10*time.Second, "the re-sent message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) > 4 && attempts[4] == 1
	})
}

func TestStartPositions(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	publishN(t, b.Broker, "t", 3, PublishOptions{Queue: 0}, nil)
	time.Sleep(5 * time.Millisecond) // store times before and after mid are apart
	mid := time.Now()
	publishN(t, b.Broker, "t", 2, PublishOptions{Queue: 0}, func(int) string { return "late" })
	waitFor(t, 5*time.Second, "5 indexed", func() bool { _, hi := b.store.Offsets("t", 0); return hi == 5 })
	first := pullN(t, join(t, b.Broker, "first", "m", MemberOptions{Subscriptions: subs("t", "*")}), 5)
	if string(first[0].Body) != "0" {
		t.Fatalf("from first: %q", first[0].Body)
	}
	byTime := pullN(t, join(t, b.Broker, "bytime", "m", MemberOptions{Subscriptions: subs("t", "*"), StartFrom: StartFrom{Kind: StartTime, Time: mid}}), 2)
	if byTime[0].Subject != "late" {
		t.Fatalf("from time: %q", byTime[0].Subject)
	}
	last := join(t, b.Broker, "last", "m", MemberOptions{Subscriptions: subs("t", "*"), StartFrom: StartFrom{Kind: StartLast}})
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, func(int) string { return "new" })
	if ds := pullN(t, last, 1); ds[0].Subject != "new" {
		t.Fatalf("from last: %q", ds[0].Subject)
	}
}

func TestOrderedUnderFailures(t *testing.T) {
	cfg := testConfig(t)
	b := openBroker(t, t.TempDir(), cfg)
	b.CreateTopic("t", 4)
	var mu sync.Mutex
	handled := map[int][]int{} // queue → sequence numbers handled, in order
	failed := map[string]bool{}
	r := rand.New(rand.NewSource(1))
	var members []*Member
	var stops []func()
	for i := 0; i < 2; i++ {
		m := join(t, b.Broker, "g", fmt.Sprint("m", i), MemberOptions{Subscriptions: subs("t", "*"), Ordered: true})
		members = append(members, m)
		stops = append(stops, consume(t, m, newCollector(), PushOptions{Concurrency: 4}, func(d *Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			key := string(d.Body)
			if !failed[key] && r.Intn(10) == 0 { // one in ten fails once
				failed[key] = true
				return errors.New("transient")
			}
			seq, _ := strconv.Atoi(key)
			handled[d.QueueID] = append(handled[d.QueueID], seq)
			return nil
		}))
	}
	const n = 400
	for i := 0; i < n; i++ {
		if _, err := b.Publish(context.Background(), &Message{Topic: "t", Body: []byte(fmt.Sprint(i))},
			PublishOptions{Queue: QueueAuto, ShardKey: fmt.Sprint("k", i%4)}); err != nil {
			t.Fatal(err)
		}
		if i == n/2 { // a member leaves mid-stream: order still holds
			stops[1]()
			members[1].Leave()
		}
	}
	waitFor(t, 20*time.Second, "every message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, s := range handled {
			total += len(s)
		}
		return total >= n
	})
	stops[0]()
	mu.Lock()
	defer mu.Unlock()
	for q, seqs := range handled {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("queue %d handled %d after %d: %v", q, seqs[i], seqs[i-1], seqs)
			}
		}
	}
	if len(failed) == 0 {
		t.Fatal("no failure was injected")
	}
}

func TestDelayedDelivery(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	c := newCollector()
	var at sync.Map
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	defer consume(t, m, c, PushOptions{}, func(d *Delivery) error {
		at.Store(string(d.Body), time.Now().Round(0))
		return nil
	})()
	// Delivery times are wall-clock times (DeliverAt is Unix nanoseconds):
	// compare on the wall clock, which may drift from the monotonic one.
	start := time.Now().Round(0)
	due := map[string]time.Time{
		"300ms": start.Add(300 * time.Millisecond),
		"1.2s":  start.Add(1200 * time.Millisecond), // more than one hop
		"now":   {},
	}
	for body, when := range due {
		msg := &Message{Topic: "t", Body: []byte(body)}
		if !when.IsZero() {
			msg.DeliverAt = when.UnixNano()
		}
		res, err := b.Publish(context.Background(), msg, PublishOptions{Queue: QueueAuto})
		if err != nil || res.Delayed == when.IsZero() {
			t.Fatalf("publish %s: %+v %v", body, res, err)
		}
	}
	// Level 4 is 30 s, scaled to 30 ms.
	b.Publish(context.Background(), &Message{Topic: "t", Body: []byte("level4")}, PublishOptions{Queue: QueueAuto, DelayLevel: 4})
	due["level4"] = start.Add(30 * time.Millisecond)
	waitFor(t, 10*time.Second, "all four", func() bool { return c.distinct() == 4 })
	for body, when := range due {
		v, _ := at.Load(body)
		if got := v.(time.Time); got.Before(when) {
			t.Errorf("%s delivered %v before its time", body, when.Sub(got))
		} else {
			t.Logf("%s delivered %v after its time", body, got.Sub(when))
		}
	}
	if _, err := b.Publish(context.Background(), &Message{Topic: "t"}, PublishOptions{DelayLevel: 19}); err == nil {
		t.Fatal("delay level 19 accepted")
	}
}

func TestHeartbeatExpiry(t *testing.T) {
	cfg := testConfig(t)
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	b := openBroker(t, t.TempDir(), cfg)
	b.CreateTopic("t", 4)
	m1 := join(t, b.Broker, "g", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	join(t, b.Broker, "g", "m2", MemberOptions{Subscriptions: subs("t", "*")})
	// m1 keeps heart-beating, m2 falls silent.
	waitFor(t, 5*time.Second, "m2 expired", func() bool {
		m1.Heartbeat()
		info, _ := b.Group("g")
		return len(info.Members) == 1 && info.Members[0].ID == "m1" && len(info.Members[0].Queues) == 5
	})
}

func TestRestartKeepsOffsetsRetriesAndDelayed(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.DelayLevels = append([]time.Duration(nil), scaledLevels...)
	cfg.DelayLevels[2] = 700 * time.Millisecond // the first retry waits long enough to restart in between
	b := openBroker(t, dir, cfg)
	b.CreateTopic("t", 2)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	publishN(t, b.Broker, "t", 10, PublishOptions{Queue: QueueAuto}, nil)
	ds := pullN(t, m, 10)
	for _, d := range ds {
		if string(d.Body) == "3" {
			if err := m.Nack(context.Background(), d, errors.New("later")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		m.Ack(d)
	}
	b.Publish(context.Background(), &Message{Topic: "t", Body: []byte("delayed"), DeliverAt: time.Now().Add(700 * time.Millisecond).UnixNano()},
		PublishOptions{Queue: QueueAuto})
	b.close(t)

	b = openBroker(t, dir, cfg)
	m = join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	got := map[string]int{}
	for _, d := range pullN(t, m, 2) {
		got[string(d.Body)] = d.Attempt
		m.Ack(d)
	}
	if len(got) != 2 || got["3"] != 2 || got["delayed"] != 1 {
		t.Fatalf("after restart got %v; want only the retry of 3 (attempt 2) and the delayed message", got)
	}
}

// pullN pulls until it has n deliveries.
func pullN(t testing.TB, m *Member, n int) []*Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*Delivery
	for len(out) < n {
		ds, err := m.Pull(ctx, n-len(out))
		if err != nil {
			t.Fatalf("pulled %d of %d: %v", len(out), n, err)
		}
		out = append(out, ds...)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if extra, _ := m.Pull(short, 10); len(extra) > 0 {
		t.Fatalf("pulled %d more than the %d expected: %q", len(extra), n, extra[0].Body)
	}
	return out
}

func TestResetOffsets(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	publishN(t, b.Broker, "t", 5, PublishOptions{Queue: 0}, nil)
	for _, d := range pullN(t, m, 5) {
		m.Ack(d)
	}
	if err := b.ResetOffsets("g", StartFrom{Kind: StartFirst}); err != nil {
		t.Fatal(err)
	}
	if ds := pullN(t, m, 5); string(ds[0].Body) != "0" {
		t.Fatalf("after reset to first got %q", ds[0].Body)
	}
	if err := b.ResetOffsets("nope", StartFrom{}); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("reset of an unknown group: %v", err)
	}
}

// A member subscribed to AnyTopic reads every user topic, those created after
// it joined too, with the union of its filters where it also names a topic.
func TestAnyTopicAndUnionFilters(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("devices", 2)
	c := newCollector()
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: []GroupSub{
		{Topic: AnyTopic, Filter: mustFilter(t, "+/telemetry")},
		{Topic: "devices", Filter: mustFilter(t, "7/#")},
		{Topic: "devices", Filter: mustFilter(t, "8/cmd")},
	}})
	defer consume(t, m, c, PushOptions{}, nil)()
	subject := func(i int) string { return []string{"1/telemetry", "7/cmd", "8/cmd", "9/cmd"}[i%4] }
	publishN(t, b.Broker, "devices", 40, PublishOptions{Queue: QueueAuto}, subject)
	publishN(t, b.Broker, "later", 40, PublishOptions{Queue: QueueAuto}, subject) // auto-created: only */telemetry
	waitFor(t, 5*time.Second, "30 from devices and 10 from later", func() bool { return c.total() == 40 })
	time.Sleep(100 * time.Millisecond)
	if n := c.total(); n != 40 {
		t.Fatalf("got %d messages, want 40", n)
	}
	if _, err := b.Join("g2", "m", MemberOptions{Subscriptions: []GroupSub{{Topic: "%RETRY%x"}}}); err == nil {
		t.Fatal("a member joined an internal topic by name")
	}
}

func TestDeleteGroupForgetsOffsets(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	publishN(t, b.Broker, "t", 10, PublishOptions{Queue: QueueAuto}, nil)
	c := newCollector()
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	stop := consume(t, m, c, PushOptions{}, nil)
	waitFor(t, 5*time.Second, "10 messages", func() bool { return c.distinct() == 10 })
	stop()
	if err := b.DeleteGroup("g"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pull(context.Background(), 1); !errors.Is(err, ErrNotMember) {
		t.Fatalf("pull after delete: %v, want ErrNotMember", err)
	}
	if err := b.DeleteGroup("g"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("second delete: %v, want ErrUnknownGroup", err)
	}
	c2 := newCollector()
	m2 := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	defer consume(t, m2, c2, PushOptions{}, nil)()
	waitFor(t, 5*time.Second, "the 10 messages again: the offsets were forgotten", func() bool { return c2.distinct() == 10 })
}
