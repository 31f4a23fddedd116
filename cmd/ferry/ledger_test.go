package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
)

// ledger is what a load's producers had acknowledged and what a consumer
// group received: the checker of the replication tests. Every message's
// body is "<sender>-<seq>", seq counting up from 0 for each sender.
type ledger struct {
	mu    sync.Mutex
	acked map[string]bool // bodies the broker acknowledged
	// got is each queue's deliveries, as the group received them (its
	// handlers run concurrently: check orders them by queue offset).
	got map[string][]delivery
	// firstAck is when the first send started after a mark was acknowledged
	// (the failover time: from kill -9 to the first acknowledged write).
	mark     time.Time
	firstAck time.Time
	sendErrs atomic.Int64
	// onAck, when set before produce, is told of every acknowledged send
	// (under mu): which broker stored it, and when.
	onAck func(r *client.SendResult, at time.Time)
}

// delivery is one message the group received.
type delivery struct {
	offset int64
	body   string
}

func newLedger() *ledger {
	return &ledger{acked: map[string]bool{}, got: map[string][]delivery{}}
}

// consumeFromFirst starts consumer group group on topic from its first
// message, received into l, and closes it at the test's end.
func (l *ledger) consumeFromFirst(ctx context.Context, t *testing.T, nss []string, group, topic string) {
	t.Helper()
	cons, err := client.NewPushConsumer(group, client.WithNameServers(nss...), client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cons.Close() })
	if err := cons.Subscribe(topic, "*", l.consume); err != nil {
		t.Fatal(err)
	}
	if err := cons.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// produce sends from senders goroutines until ctx ends, recording what is
// acknowledged; a failed send is retried as a new message after a pause.
func (l *ledger) produce(ctx context.Context, t *testing.T, p *client.Producer, topic string, senders int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				body := fmt.Sprintf("%d-%d", s, seq)
				start := time.Now()
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				res, err := p.Send(sctx, &client.Message{Topic: topic, Body: []byte(body)})
				cancel()
				if err != nil {
					l.sendErrs.Add(1)
					if ctx.Err() == nil {
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				l.mu.Lock()
				l.acked[body] = true
				if l.onAck != nil {
					l.onAck(&res, time.Now())
				}
				if !l.mark.IsZero() && l.firstAck.IsZero() && start.After(l.mark) {
					l.firstAck = time.Now()
				}
				l.mu.Unlock()
			}
		}()
	}
	return &wg
}

// markFailover starts a failover's clock.
func (l *ledger) markFailover() {
	l.mu.Lock()
	l.mark, l.firstAck = time.Now(), time.Time{}
	l.mu.Unlock()
}

// failoverTime waits up to limit for the first acknowledged send since the
// mark, and returns how long it took from the mark.
func (l *ledger) failoverTime(limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		mark, first := l.mark, l.firstAck
		l.mu.Unlock()
		if !first.IsZero() {
			return first.Sub(mark), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no acknowledged write within %v of the kill", limit)
}

// consume records a delivery of the group.
func (l *ledger) consume(_ context.Context, m *client.MessageExt) error {
	q := m.Broker + "/" + strconv.Itoa(m.QueueID)
	l.mu.Lock()
	l.got[q] = append(l.got[q], delivery{m.QueueOffset, string(m.Body)})
	l.mu.Unlock()
	return nil
}

// verdict is the checker's report.
type verdict struct {
	Acked, Received int
	Lost            []string       // acknowledged, never received
	Duplicated      map[string]int // received more than once, per queue
	OutOfOrder      map[string]int // received after a later one of its sender, per queue
	Unacked         int            // received though the send failed (a timed-out send that was stored)
	Examples        []string
	SendErrors      int64
}

func (v verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "acknowledged %d, received %d distinct, lost %d, unacknowledged but received %d, send errors %d",
		v.Acked, v.Received, len(v.Lost), v.Unacked, v.SendErrors)
	for _, m := range []struct {
		name string
		per  map[string]int
	}{{"duplicated", v.Duplicated}, {"out of order", v.OutOfOrder}} {
		var qs []string
		for q, n := range m.per {
			qs = append(qs, fmt.Sprintf("%s:%d", q, n))
		}
		sort.Strings(qs)
		fmt.Fprintf(&b, "; %s per queue [%s]", m.name, strings.Join(qs, " "))
	}
	fmt.Fprintf(&b, "; examples %v", v.Examples)
	if len(v.Lost) > 0 {
		n := min(len(v.Lost), 20)
		fmt.Fprintf(&b, "; lost (first %d): %v", n, v.Lost[:n])
	}
	return b.String()
}

// check compares what was acknowledged with what was received.
func (l *ledger) check() verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := verdict{Acked: len(l.acked), Duplicated: map[string]int{}, OutOfOrder: map[string]int{}, SendErrors: l.sendErrs.Load()}
	seen := map[string]bool{}
	for q, ds := range l.got {
		ds = slices.Clone(ds)
		slices.SortStableFunc(ds, func(a, b delivery) int { return cmp.Compare(a.offset, b.offset) })
		last := map[string]int{} // sender → highest seq received in this queue
		inQueue := map[string]bool{}
		for _, d := range ds {
			body := d.body
			if inQueue[body] {
				v.Duplicated[q]++
				continue
			}
			inQueue[body] = true
			sender, seqStr, _ := strings.Cut(body, "-")
			seq, _ := strconv.Atoi(seqStr)
			if hi, ok := last[sender]; ok && seq < hi {
				v.OutOfOrder[q]++
				if len(v.Examples) < 10 {
					v.Examples = append(v.Examples, fmt.Sprintf("%s: %s after %s-%d acked=%v", q, body, sender, hi, l.acked[body]))
				}
			} else {
				last[sender] = seq
			}
			if seen[body] { // in another queue too: a resend that was stored twice
				v.Duplicated[q]++
			}
			seen[body] = true
		}
	}
	v.Received = len(seen)
	for body := range l.acked {
		if !seen[body] {
			v.Lost = append(v.Lost, body)
		}
	}
	sort.Strings(v.Lost)
	for body := range seen {
		if !l.acked[body] {
			v.Unacked++
		}
	}
	return v
}

// waitAll waits up to limit until every acknowledged message was received.
func (l *ledger) waitAll(limit time.Duration) verdict {
	deadline := time.Now().Add(limit)
	for {
		v := l.check()
		if len(v.Lost) == 0 || time.Now().After(deadline) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
}
