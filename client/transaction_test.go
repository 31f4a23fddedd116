package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestTransactionProducer(t *testing.T) {
	f := startFerryWith(t, &testFerry{txCheck: 300 * time.Millisecond})
	f.createTopic(t, "tx", 2)
	var rec recorder
	c := f.startConsumer(t, "tx-consumer", "tx", "*", rec.handle)

	var mu sync.Mutex
	checked := map[string]int{}
	tp, err := NewTransactionProducer(func(_ context.Context, m *MessageExt) TransactionState {
		mu.Lock()
		defer mu.Unlock()
		checked[string(m.Body)]++
		if m.Topic != "tx" || m.Tag != "t" {
			return TransactionRollback // the check carries the message as sent
		}
		return TransactionCommit
	}, f.opts(WithGroup("tx-producer"))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var early bool
	local := func(_ context.Context, m *Message, res SendResult) TransactionState {
		switch string(m.Body) {
		case "commit":
			time.Sleep(100 * time.Millisecond) // the consumer is running: it must see nothing yet
			early = rec.len() > 0
			return TransactionCommit
		case "rollback":
			return TransactionRollback
		}
		return TransactionUnknown
	}
	for _, body := range []string{"commit", "rollback", "unknown"} {
		res, state, err := tp.SendInTransaction(ctx, &Message{Topic: "tx", Tag: "t", Body: []byte(body)}, local)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if state.String() != body || res.MsgID == "" {
			t.Fatalf("%s: state %s, result %+v", body, state, res)
		}
	}
	eventually(t, 20*time.Second, func() bool {
		b := rec.bodies()
		return b["commit"] == 1 && b["unknown"] == 1
	}, "the committed and the checked message")
	if early {
		t.Error("the committed message was delivered before its commit")
	}
	mu.Lock()
	if checked["unknown"] == 0 || checked["commit"] != 0 || checked["rollback"] != 0 {
		t.Errorf("checks: %v, want the unknown message's only", checked)
	}
	mu.Unlock()
	if rec.bodies()["rollback"] != 0 {
		t.Error("the rolled back message was delivered")
	}
	if _, _, err := tp.SendInTransaction(ctx, &Message{Topic: "tx", Body: []byte("x"), DelayLevel: 2}, local); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("a delayed transactional message: %v, want ErrInvalidMessage", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	noClientGoroutines(t)
}
