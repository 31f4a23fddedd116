package core

import (
	"context"
	"errors"
	"testing"
	"time"
)

func txConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.TransactionCheckDelay = time.Hour // checks only where a test wants them
	cfg.TransactionCheckInterval = time.Hour
	return cfg
}

func halfMessage(topic, body, key string) *Message {
	return &Message{Topic: topic, Body: []byte(body), Subject: "tag",
		Properties: PropertiesOf(map[string]string{propProducerGroup: "pg", propUniqKey: key, propTranPrepared: "true"})}
}

// visible reads what a consumer of topic's queue q sees.
func visible(t testing.TB, b *Broker, topic string, q int) []Message {
	t.Helper()
	res, err := b.Read(context.Background(), topic, q, 0, ReadOptions{Max: 100, Wait: 100 * time.Millisecond})
	if err != nil && !errors.Is(err, ErrUnknownTopic) {
		t.Fatal(err)
	}
	return res.Messages
}

func TestTransactionCommitDeliversOnlyAfterCommit(t *testing.T) {
	b := openBroker(t, t.TempDir(), txConfig(t))
	ctx := context.Background()
	res, err := b.PublishHalf(ctx, halfMessage("orders", "paid", "k1"), PublishOptions{Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Topic != "orders" || res.QueueID != 2 {
		t.Fatalf("half message's result names %s/%d, want orders/2", res.Topic, res.QueueID)
	}
	if got := visible(t, b.Broker, "orders", 2); len(got) != 0 {
		t.Fatalf("a half message is visible before its commit: %d messages", len(got))
	}
	if _, err := b.Read(ctx, halfTopic, 0, 0, ReadOptions{}); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("reading the half topic: %v, want ErrUnknownTopic", err)
	}
	if st := b.TransactionState(res.LogOffset); !st.Pending || st.Group != "pg" {
		t.Fatalf("state before the end: %+v", st)
	}
	if err := b.EndTransaction(ctx, EndTransaction{Group: "pg", LogOffset: res.LogOffset, Commit: true}, nil); err != nil {
		t.Fatal(err)
	}
	got := visible(t, b.Broker, "orders", 2)
	if len(got) != 1 || string(got[0].Body) != "paid" || got[0].Subject != "tag" {
		t.Fatalf("after the commit: %+v", got)
	}
	for _, p := range []string{propRealTopic, propRealQueue, propTranPrepared} {
		if _, ok := got[0].Properties.Lookup(p); ok {
			t.Errorf("the committed message keeps property %s", p)
		}
	}
	if got[0].Properties.Get(propUniqKey) != "k1" {
		t.Errorf("the committed message lost its UNIQ_KEY: %v", got[0].Properties)
	}
	if st := b.TransactionState(res.LogOffset); st.Pending {
		t.Fatalf("still pending after its commit: %+v", st)
	}
	err = b.EndTransaction(ctx, EndTransaction{LogOffset: res.LogOffset, Commit: true}, nil)
	if !errors.Is(err, ErrUnknownTransaction) {
		t.Fatalf("a second commit: %v, want ErrUnknownTransaction", err)
	}
	if got := visible(t, b.Broker, "orders", 2); len(got) != 1 {
		t.Fatalf("a second commit delivered again: %d messages", len(got))
	}
}

func TestTransactionRollbackNeverDelivers(t *testing.T) {
	b := openBroker(t, t.TempDir(), txConfig(t))
	ctx := context.Background()
	res, err := b.PublishHalf(ctx, halfMessage("orders", "cancelled", "k2"), PublishOptions{Queue: 0})
	if err != nil {
		t.Fatal(err)
	}
	// The end finds the half message by its key when the offset is wrong
	// (a client that could not parse the id).
	if err := b.EndTransaction(ctx, EndTransaction{Group: "pg", LogOffset: 1 << 40, Key: "k2"}, nil); err != nil {
		t.Fatal(err)
	}
	if st := b.TransactionState(res.LogOffset); st.Pending {
		t.Fatalf("pending after its rollback: %+v", st)
	}
	if err := b.EndTransaction(ctx, EndTransaction{LogOffset: res.LogOffset, Commit: true}, nil); !errors.Is(err, ErrUnknownTransaction) {
		t.Fatalf("a commit after the rollback: %v, want ErrUnknownTransaction", err)
	}
	if got := visible(t, b.Broker, "orders", 0); len(got) != 0 {
		t.Fatalf("a rolled back message was delivered: %+v", got)
	}
}

func TestTransactionEndRefusals(t *testing.T) {
	b := openBroker(t, t.TempDir(), txConfig(t))
	ctx := context.Background()
	if _, err := b.PublishHalf(ctx, &Message{Topic: "orders", Body: []byte("x")}, PublishOptions{Queue: QueueAuto}); !errors.Is(err, ErrInvalidTransaction) {
		t.Fatalf("a half message without a producer group: %v, want ErrInvalidTransaction", err)
	}
	if _, err := b.PublishHalf(ctx, halfMessage("orders", "x", "k"), PublishOptions{Queue: QueueAuto, DelayLevel: 2}); !errors.Is(err, ErrInvalidTransaction) {
		t.Fatalf("a delayed half message: %v, want ErrInvalidTransaction", err)
	}
	res, err := b.PublishHalf(ctx, halfMessage("orders", "x", "k3"), PublishOptions{Queue: QueueAuto})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EndTransaction(ctx, EndTransaction{Group: "other", LogOffset: res.LogOffset, Commit: true}, nil); !errors.Is(err, ErrUnknownTransaction) {
		t.Fatalf("another group's commit: %v, want ErrUnknownTransaction", err)
	}
	no := errors.New("refused")
	err = b.EndTransaction(ctx, EndTransaction{LogOffset: res.LogOffset, Commit: true}, func(m *Message) error {
		if m.Topic != "orders" {
			t.Errorf("allow sees topic %q, want the real one", m.Topic)
		}
		return no
	})
	if !errors.Is(err, no) {
		t.Fatalf("a refused commit: %v", err)
	}
	if !b.TransactionState(res.LogOffset).Pending {
		t.Fatal("a refused end resolved the half message")
	}
}

func TestTransactionUnknownIsResolvedByCheck(t *testing.T) {
	cfg := txConfig(t)
	cfg.TransactionCheckDelay = 20 * time.Millisecond
	cfg.TransactionCheckInterval = 20 * time.Millisecond
	b := openBroker(t, t.TempDir(), cfg)
	ctx := context.Background()
	checks := make(chan TransactionCheck, 16)
	b.OnTransactionCheck(func(c TransactionCheck) bool {
		checks <- c
		return true
	})
	res, err := b.PublishHalf(ctx, halfMessage("orders", "maybe", "k4"), PublishOptions{Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	var c TransactionCheck
	select {
	case c = <-checks:
	case <-time.After(10 * time.Second):
		t.Fatal("no check came")
	}
	if c.Group != "pg" || c.Check != 1 || c.Message.Topic != "orders" || c.Message.QueueID != 1 ||
		c.Message.LogOffset != res.LogOffset || string(c.Message.Body) != "maybe" || c.ID != res.MessageID() {
		t.Fatalf("check: %+v", c)
	}
	if got := visible(t, b.Broker, "orders", 1); len(got) != 0 {
		t.Fatal("visible while unresolved")
	}
	if err := b.EndTransaction(ctx, EndTransaction{Group: c.Group, LogOffset: c.Message.LogOffset, Commit: true}, nil); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, b.Broker, "orders", 1); len(got) != 1 {
		t.Fatalf("after the check's commit: %d messages", len(got))
	}
}

func TestTransactionDiscardedAfterMaxChecks(t *testing.T) {
	cfg := txConfig(t)
	cfg.TransactionCheckDelay = 10 * time.Millisecond
	cfg.TransactionCheckInterval = 10 * time.Millisecond
	cfg.TransactionMaxChecks = 3
	b := openBroker(t, t.TempDir(), cfg)
	checks := make(chan TransactionCheck, 16)
	b.OnTransactionCheck(func(c TransactionCheck) bool {
		checks <- c
		return true
	})
	res, err := b.PublishHalf(context.Background(), halfMessage("orders", "never", "k5"), PublishOptions{Queue: 0})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the discard", func() bool { return !b.TransactionState(res.LogOffset).Pending })
	if n := len(checks); n != 3 {
		t.Fatalf("%d checks before the discard, want 3", n)
	}
	if got := visible(t, b.Broker, "orders", 0); len(got) != 0 {
		t.Fatal("a discarded half message was delivered")
	}
}

func TestTransactionPendingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := txConfig(t)
	cfg.TransactionCheckDelay = 200 * time.Millisecond
	b := openBroker(t, dir, cfg)
	ctx := context.Background()
	res, err := b.PublishHalf(ctx, halfMessage("orders", "after restart", "k6"), PublishOptions{Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	done, err := b.PublishHalf(ctx, halfMessage("orders", "rolled back", "k7"), PublishOptions{Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EndTransaction(ctx, EndTransaction{LogOffset: done.LogOffset}, nil); err != nil {
		t.Fatal(err)
	}
	b.close(t)

	b = openBroker(t, dir, cfg)
	checks := make(chan TransactionCheck, 16)
	b.OnTransactionCheck(func(c TransactionCheck) bool {
		checks <- c
		return true
	})
	if st := b.TransactionState(res.LogOffset); !st.Pending {
		t.Fatalf("the pending half message was forgotten by the restart: %+v", st)
	}
	if b.TransactionState(done.LogOffset).Pending {
		t.Fatal("a resolved half message is pending again after the restart")
	}
	var c TransactionCheck
	select {
	case c = <-checks:
	case <-time.After(10 * time.Second):
		t.Fatal("no check after the restart")
	}
	if c.Message.LogOffset != res.LogOffset {
		t.Fatalf("checked %d, want %d", c.Message.LogOffset, res.LogOffset)
	}
	if err := b.EndTransaction(ctx, EndTransaction{LogOffset: c.Message.LogOffset, Commit: true}, nil); err != nil {
		t.Fatal(err)
	}
	got := visible(t, b.Broker, "orders", 3)
	if len(got) != 1 || string(got[0].Body) != "after restart" {
		t.Fatalf("after the restart's commit: %+v", got)
	}
	b.close(t)
	b = openBroker(t, dir, cfg)
	if b.TransactionState(res.LogOffset).Pending {
		t.Fatal("a committed half message is pending again after a second restart")
	}
	if got := visible(t, b.Broker, "orders", 3); len(got) != 1 {
		t.Fatalf("%d messages after a second restart, want 1", len(got))
	}
}
