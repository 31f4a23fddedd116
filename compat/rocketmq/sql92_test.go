package rocketmq

import (
	"context"
	"fmt"
	"log"
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
)

// clientLog is the RocketMQ client's logger in these tests, set before
// any client runs (the client reads it unsynchronized).
var clientLog = &warnings{}

func init() { rlog.SetLogger(clientLog) }

// warnings is an rlog.Logger that keeps the client's last warnings with
// their fields, prints its errors, and drops everything else.
type warnings struct {
	mu   sync.Mutex
	logs []string
}

const maxWarnings = 10000

func (w *warnings) Debug(string, map[string]interface{}) {}
func (w *warnings) Info(string, map[string]interface{})  {}
func (w *warnings) Warning(msg string, fields map[string]interface{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.logs) == maxWarnings {
		w.logs = w.logs[:copy(w.logs, w.logs[maxWarnings/2:])]
	}
	w.logs = append(w.logs, fmt.Sprint(msg, fields))
}
func (w *warnings) Error(msg string, fields map[string]interface{}) {
	log.Print("rocketmq client: ", msg, fields)
}
func (w *warnings) Fatal(msg string, fields map[string]interface{}) {
	log.Print("rocketmq client: ", msg, fields)
}
func (w *warnings) Level(string)            {}
func (w *warnings) OutputPath(string) error { return nil }

func (w *warnings) find(s string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.logs {
		if strings.Contains(l, s) {
			return l, true
		}
	}
	return "", false
}

// TestRocketMQGoClientSQL92: RocketMQ's Go client subscribes with
// MessageSelector{Type: SQL92}; Ferry evaluates the selector on each
// message's user properties and delivers exactly the matching ones. A
// selector that does not parse is refused at the consumer's heartbeat with
// its position: this client logs the broker's answer (v2.1.2 does not
// check its subscription at Start, and its Start succeeds) and gets nothing.
func TestRocketMQGoClientSQL92(t *testing.T) {
	w := clientLog
	f := startFerry(t)
	if _, err := f.broker.CreateTopic("SqlTopic", 4); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "SqlTopic")

	type received struct {
		a, region string
	}
	var mu sync.Mutex
	got := map[string]received{}
	var bad []string
	// The client's first route update (10 ms after its start) and a
	// consumer's first rebalance race on the subscription's version, in
	// the client: the producer starts the client the consumer then shares
	// (instance "sql92"), and sends, before the consumer starts. The
	// consumer with the bad selector has a client of its own and never
	// rebalances anything.
	start := func(group, instance, expr string) rocketmq.PushConsumer {
		return startPushConsumer(t, f.ns, "SqlTopic", consumer.MessageSelector{Type: consumer.SQL92, Expression: expr},
			func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range msgs {
					if group != "sql-consumer" {
						bad = append(bad, string(m.Body))
						continue
					}
					got[string(m.Body)] = received{m.GetProperty("a"), m.GetProperty("region")}
				}
				return consumer.ConsumeSuccess, nil
			}, consumer.WithGroupName(group), consumer.WithInstance(instance))
	}
	p := startProducer(t, f.ns, producer.WithGroupName("sql-producer"), producer.WithInstanceName("sql92"))
	send := func(body string, props map[string]string) {
		msg := primitive.NewMessage("SqlTopic", []byte(body)).WithTag("TagA")
		msg.WithProperties(props)
		if res, err := p.SendSync(context.Background(), msg); err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send %s: %v %v", body, res, err)
		}
	}
	want := map[string]bool{}
	regions := []string{"eu", "us", "ap"}
	for i := range 30 {
		body, region := "m"+strconv.Itoa(i), regions[i%3]
		props := map[string]string{"a": strconv.Itoa(i), "region": region}
		switch i {
		case 28:
			delete(props, "a") // missing: the comparison is unknown, never true
		case 29:
			props["a"] = "x" // not a number: the whole expression is false
		}
		send(body, props)
		if i > 5 && i < 28 && region != "ap" {
			want[body] = true
		}
	}
	// One matching message per queue last (the producer takes the queues in
	// turn): once each came, every queue was read past what came before.
	for i := range 4 {
		body := "end" + strconv.Itoa(i)
		send(body, map[string]string{"a": "100", "region": "eu"})
		want[body] = true
	}
	deadline := time.Now().Add(60 * time.Second)

	// The bad selector first, so that its consumer's first rebalance is
	// long over when the test ends: the client races with itself when it
	// shuts down during one.
	start("sql-bad", "sql92-bad", "a > 5 AND region IN ('eu' 'us')")
	for time.Now().Before(deadline) {
		if _, ok := w.find("position 27"); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	l, ok := w.find("position 27")
	if !ok || !strings.Contains(l, "SQL92 filter refused") {
		t.Fatalf("the client never saw the broker refuse the bad selector with its position")
	}
	t.Logf("the client logged: %s", l)

	start("sql-consumer", "sql92", "a > 5 AND region IN ('eu','us')")
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d matching messages", n, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	for body, r := range got {
		if !want[body] {
			t.Errorf("%s (a=%q, region=%q) does not match the selector but was delivered", body, r.a, r.region)
		}
	}
	mu.Unlock()

	// The bad selector's consumer got nothing.
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("the consumer with a bad selector got %d messages", len(bad))
	}
}
