package rocketmq

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/ferrymq/ferry/core"
)

// txListener is the local transaction: a message's body says how it ends.
// "commit" waits a second first (less than the broker's first check, 3 s
// here), while the test watches that nothing is delivered before the commit.
type txListener struct {
	mu       sync.Mutex
	received map[string]bool // what the consumer got
	early    bool            // "commit" was delivered before its commit
	checked  map[string]int  // CheckLocalTransaction's calls by body
}

func (l *txListener) got(body string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.received[body]
}

func (l *txListener) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	switch string(m.Body) {
	case "commit":
		time.Sleep(time.Second) // the consumer is running: it must see nothing yet
		l.mu.Lock()
		l.early = l.received["commit"]
		l.mu.Unlock()
		return primitive.CommitMessageState
	case "rollback":
		return primitive.RollbackMessageState
	default:
		return primitive.UnknowState
	}
}

func (l *txListener) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	l.mu.Lock()
	l.checked[string(m.Body)]++
	l.mu.Unlock()
	if m.Topic != "TxTopic" {
		return primitive.RollbackMessageState // the check must carry the real topic
	}
	return primitive.CommitMessageState
}

func TestRocketMQTransactionProducer(t *testing.T) {
	rlog.SetLogLevel("error")
	f := startFerryWith(t, nil, core.Config{TransactionCheckDelay: 3 * time.Second, TransactionCheckInterval: time.Second})
	if _, err := f.broker.CreateTopic("TxTopic", 4); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "TxTopic")

	l := &txListener{received: map[string]bool{}, checked: map[string]int{}}
	// The transaction producer first: the client instance it makes (which
	// the consumer shares) serves the broker's checks.
	p, err := rocketmq.NewTransactionProducer(l, producer.WithNameServer([]string{f.ns}), producer.WithRetry(2),
		producer.WithGroupName("compat-tx-producer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() }) // after the consumer's, which shares its client

	startPushConsumer(t, f.ns, "TxTopic", consumer.MessageSelector{}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, m := range msgs {
			l.received[string(m.Body)] = true
		}
		return consumer.ConsumeSuccess, nil
	}, consumer.WithGroupName("compat-tx-consumer"), consumer.WithConsumerModel(consumer.Clustering))

	for _, body := range []string{"rollback", "unknown", "commit"} {
		res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage("TxTopic", []byte(body)))
		if err != nil {
			t.Fatalf("send %s: %v", body, err)
		}
		if res.Status != primitive.SendOK {
			t.Fatalf("send %s: %v", body, res)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !l.got("commit") || !l.got("unknown") {
		if time.Now().After(deadline) {
			l.mu.Lock()
			t.Fatalf("not delivered within 30 s: received %v, checks %v", l.received, l.checked)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.early {
		t.Error("the committed message was delivered before its commit")
	}
	if l.checked["unknown"] == 0 {
		t.Error("the unknown message was delivered without a check")
	}
	if l.checked["commit"] != 0 || l.checked["rollback"] != 0 {
		t.Errorf("messages their producer ended were checked: %v", l.checked)
	}
	if l.received["rollback"] {
		t.Error("the rolled back message was delivered")
	}
}
