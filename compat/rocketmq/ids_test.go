package rocketmq

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/remoting"
)

// TestOrderedSendsToAutoCreatedTopics sends keyed messages through the
// client's hash selector to topics no one created, with an orderly
// consumer started right after each topic's first send: the topic takes
// the client's queue count (4, TBW102's 8 capped by the client), so the
// selector keeps every key on one queue, and the consumer finds the new
// topic's route at once. Ten topics, ten runs in a row.
func TestOrderedSendsToAutoCreatedTopics(t *testing.T) {
	rlog.SetLogLevel("error")
	f := startFerry(t)
	waitForRoute(t, f.ns, "TBW102")
	p := startProducer(t, f.ns, producer.WithGroupName("ordered-producer"), producer.WithQueueSelector(producer.NewHashQueueSelector()))

	const keys, perKey = 6, 20
	for run := range 10 {
		topic := fmt.Sprintf("OrderedAuto%d", run)
		send := func(k, seq int) {
			key := fmt.Sprint("key-", k)
			msg := primitive.NewMessage(topic, fmt.Appendf(nil, "%s:%d", key, seq)).WithShardingKey(key).WithKeys([]string{key})
			res, err := p.SendSync(context.Background(), msg)
			if err != nil || res.Status != primitive.SendOK {
				t.Fatalf("run %d: send %s:%d: %v %v", run, key, seq, res, err)
			}
		}
		send(0, 0)

		var mu sync.Mutex
		got := map[string][]int{} // key → sequence numbers, as consumed
		n := 0
		c, err := rocketmq.NewPushConsumer(consumer.WithNameServer([]string{f.ns}), consumer.WithGroupName("ordered-"+topic),
			consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset), consumer.WithConsumerOrder(true))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				key, seq, _ := strings.Cut(string(m.Body), ":")
				s, _ := strconv.Atoi(seq)
				got[key] = append(got[key], s)
				n++
			}
			return consumer.ConsumeSuccess, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil { // right after the first send: the route must be there
			t.Fatalf("run %d: start a consumer right after the first send to %s: %v", run, topic, err)
		}
		for seq := range perKey {
			for k := range keys {
				if k == 0 && seq == 0 {
					continue
				}
				send(k, seq)
			}
		}
		waitFor(t, 60*time.Second, fmt.Sprintf("run %d: all %d messages consumed", run, keys*perKey), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return n >= keys*perKey
		})
		c.Shutdown()
		mu.Lock()
		for k := range keys {
			key := fmt.Sprint("key-", k)
			want := make([]int, perKey)
			for i := range want {
				want[i] = i
			}
			if !slices.Equal(got[key], want) {
				t.Errorf("run %d: %s consumed in the order %v", run, key, got[key])
			}
		}
		mu.Unlock()
		if info, err := f.broker.Topic(topic); err != nil || info.Queues != 4 {
			t.Fatalf("run %d: %s auto-created with %d queues (%v), want the client's 4", run, topic, info.Queues, err)
		}
	}
}

// TestNewGroupFirstRetry: a group no broker knew gets its first retry at
// the first retry level (10 s), not at its client's 30 s route poll: its
// retry topic's route is at the NameServer before the consumer asks. The
// producer and the consumer share one client instance, as in an
// application that does both: the consumer's start then asks the
// NameServer for routes once, before its first heartbeat tells the broker
// of the group, and next at the 30 s poll.
func TestNewGroupFirstRetry(t *testing.T) {
	rlog.SetLogLevel("error")
	f := startFerry(t)
	if _, err := f.broker.CreateTopic("RetryFirst", 4); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "RetryFirst")
	p := startProducer(t, f.ns, producer.WithGroupName("retry-producer"), producer.WithInstanceName("retry-app"))
	if res, err := p.SendSync(context.Background(), primitive.NewMessage("RetryFirst", []byte("try me"))); err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	// The consumer starts a moment after the producer: past the shared
	// client's first route update (10 ms after it starts), which would
	// otherwise, by chance, come after the consumer's first heartbeat.
	time.Sleep(200 * time.Millisecond)

	var mu sync.Mutex
	var deliveries []time.Time
	var reconsumed int32
	startPushConsumer(t, f.ns, "RetryFirst", consumer.MessageSelector{}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		deliveries = append(deliveries, time.Now())
		if len(deliveries) == 1 {
			return consumer.ConsumeRetryLater, nil
		}
		reconsumed = msgs[0].ReconsumeTimes
		return consumer.ConsumeSuccess, nil
	}, consumer.WithGroupName("retry-new-group"), consumer.WithInstance("retry-app"))
	waitFor(t, 40*time.Second, "the message retried", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if late := deliveries[1].Sub(deliveries[0]); late > 15*time.Second {
		t.Fatalf("first retry %v after the failure, want within 15 s", late.Round(time.Millisecond))
	} else {
		t.Logf("first retry %v after the failure (reconsume %d)", late.Round(time.Millisecond), reconsumed)
	}
	if reconsumed != 1 {
		t.Fatalf("the retry has reconsume count %d, want 1", reconsumed)
	}
}

// TestLookupByOffsetMsgID: the ids a send returns are RocketMQ's. The
// client parses offsetMsgId into this broker's address and the message's
// commit-log offset; VIEW_MESSAGE_BY_ID there, QUERY_MESSAGE by msgId
// (UNIQ_KEY) and by key return the message, which carries the same ids as
// the consumer's copy.
func TestLookupByOffsetMsgID(t *testing.T) {
	rlog.SetLogLevel("error")
	f := startFerry(t)
	if _, err := f.broker.CreateTopic("Lookups", 4); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "Lookups")
	p := startProducer(t, f.ns, producer.WithGroupName("lookup-producer"))
	res, err := p.SendSync(context.Background(), primitive.NewMessage("Lookups", []byte("find me")).WithKeys([]string{"order-1"}).WithTag("TagL"))
	if err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send: %v %v", res, err)
	}
	id, err := primitive.UnmarshalMsgID([]byte(res.OffsetMsgID))
	if err != nil {
		t.Fatalf("the client cannot parse offsetMsgId %q: %v", res.OffsetMsgID, err)
	}
	addr := net.JoinHostPort(id.Addr, strconv.Itoa(id.Port))
	if addr != f.fe.Addr() || len(res.OffsetMsgID) != 32 {
		t.Fatalf("offsetMsgId %s names %s, want the broker's address %s", res.OffsetMsgID, addr, f.fe.Addr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := remoting.Dial(ctx, addr) // where the id says the message is
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func(how string, code int16, ext []remoting.Field) {
		t.Helper()
		resp, err := conn.Invoke(ctx, remoting.NewRequest(code, ext, nil))
		if err == nil {
			err = remoting.ResponseError(resp)
		}
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		msgs := primitive.DecodeMessage(resp.Body)
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages", how, len(msgs))
		}
		m := msgs[0]
		if string(m.Body) != "find me" || m.OffsetMsgId != res.OffsetMsgID || m.MsgId != res.MsgID || m.GetKeys() != "order-1" || m.GetTags() != "TagL" {
			t.Fatalf("%s: body %q offsetMsgId %s msgId %s keys %q tags %q; sent offsetMsgId %s msgId %s",
				how, m.Body, m.OffsetMsgId, m.MsgId, m.GetKeys(), m.GetTags(), res.OffsetMsgID, res.MsgID)
		}
	}
	check("VIEW_MESSAGE_BY_ID", remoting.ViewMessageByID, remoting.Pairs("offset", strconv.FormatInt(id.Offset, 10)))
	query := func(key string) []remoting.Field {
		return remoting.Pairs("topic", "Lookups", "key", key, "maxNum", "32", "beginTimestamp", "0",
			"endTimestamp", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	}
	check("QUERY_MESSAGE by msgId", remoting.QueryMessage, query(res.MsgID))
	check("QUERY_MESSAGE by key", remoting.QueryMessage, query("order-1"))

	// Ferry's SDK finds it by the ids RocketMQ's client got.
	a, err := client.NewAdmin(client.WithNameServers(f.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if m, err := a.ViewMessage(ctx, res.OffsetMsgID); err != nil || string(m.Body) != "find me" || m.ID != res.MsgID {
		t.Fatalf("Admin.ViewMessage(%s): %+v %v", res.OffsetMsgID, m, err)
	}
	if ms, err := a.QueryMessages(ctx, "Lookups", res.MsgID, 0); err != nil || len(ms) != 1 || ms[0].OffsetMsgID != res.OffsetMsgID {
		t.Fatalf("Admin.QueryMessages by msgId %s: %+v %v", res.MsgID, ms, err)
	}

	// A batch: one offsetMsgId a message, joined by ",".
	batch := []*primitive.Message{primitive.NewMessage("Lookups", []byte("b0")), primitive.NewMessage("Lookups", []byte("b1"))}
	bres, err := p.SendSync(context.Background(), batch...)
	if err != nil || bres.Status != primitive.SendOK {
		t.Fatalf("batch: %v %v", bres, err)
	}
	bids := strings.Split(bres.OffsetMsgID, ",")
	if len(bids) != 2 {
		t.Fatalf("batch offsetMsgId %q: want 2 ids", bres.OffsetMsgID)
	}
	for _, bid := range bids {
		if id, err := primitive.UnmarshalMsgID([]byte(bid)); err != nil || net.JoinHostPort(id.Addr, strconv.Itoa(id.Port)) != f.fe.Addr() {
			t.Fatalf("batch offsetMsgId %s: %+v %v", bid, id, err)
		}
	}

	// The consumer's copy carries the same ids.
	var mu sync.Mutex
	var consumed *primitive.MessageExt
	startPushConsumer(t, f.ns, "Lookups", consumer.MessageSelector{Type: consumer.TAG, Expression: "TagL"}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		consumed = msgs[0]
		return consumer.ConsumeSuccess, nil
	}, consumer.WithGroupName("lookup-consumer"))
	waitFor(t, 30*time.Second, "the message consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return consumed != nil
	})
	mu.Lock()
	defer mu.Unlock()
	if consumed.OffsetMsgId != res.OffsetMsgID || consumed.MsgId != res.MsgID || consumed.GetKeys() != "order-1" {
		t.Fatalf("consumed offsetMsgId %s msgId %s keys %q; sent %s %s", consumed.OffsetMsgId, consumed.MsgId, consumed.GetKeys(), res.OffsetMsgID, res.MsgID)
	}
}
