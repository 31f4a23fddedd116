package core

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMessageByID(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	res := publishN(t, b.Broker, "t", 3, PublishOptions{Queue: 0}, nil)
	for i, r := range res {
		if id := b.MessageID(r.LogOffset); id != r.MessageID() {
			t.Fatalf("MessageID(%d) = %s, publish said %s", r.LogOffset, id, r.MessageID())
		}
		m, err := b.MessageByID(r.MessageID())
		if err != nil || m.Topic != "t" || m.QueueOffset != int64(i) {
			t.Fatalf("message %d by id: %+v %v", i, m, err)
		}
	}
	for _, bad := range []string{"", "nothex", "0123456789abcdef0123456789abcdeg"} {
		if _, err := b.MessageByID(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("id %q: %v, want ErrNotFound", bad, err)
		}
	}
}

func TestDeadLetterReason(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*"), Ordered: true, MaxRetries: 1})
	publishN(t, b.Broker, "t", 1, PublishOptions{Queue: 0}, nil)
	for i := 0; i < 2; i++ {
		ds := pullN(t, m, 1)
		if err := m.Nack(context.Background(), ds[0], errors.New("bad payload")); err != nil {
			t.Fatal(err)
		}
	}
	var dead []Message
	waitFor(t, 5*time.Second, "the dead letter", func() bool {
		r, err := b.Read(context.Background(), DeadLetterTopic("g"), 0, 0, ReadOptions{Max: 10})
		dead = r.Messages
		return err == nil && len(dead) == 1
	})
	if why := DeadLetterReason(&dead[0]); why != "bad payload" {
		t.Fatalf("reason %q", why)
	}
	orig, _ := b.MessageByID(b.MessageID(dead[0].LogOffset))
	if DeadLetterReason(&orig) != "bad payload" {
		t.Fatal("the dead letter read by id has no reason")
	}
	if n, _, err := b.ResendDeadLetters(context.Background(), "g", 0, 10); err != nil || n != 1 {
		t.Fatalf("resend: %d %v", n, err)
	}
	r, _ := b.Read(context.Background(), "t", 0, 1, ReadOptions{Max: 10, Wait: time.Second})
	if len(r.Messages) != 1 || DeadLetterReason(&r.Messages[0]) != "" {
		t.Fatalf("resent: %+v", r.Messages)
	}
}

func TestSetOffset(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 2)
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: subs("t", "*")})
	publishN(t, b.Broker, "t", 10, PublishOptions{Queue: 0}, nil)
	for _, d := range pullN(t, m, 10) {
		m.Ack(d)
	}
	if err := b.SetOffset("g", "t", 0, 7); err != nil {
		t.Fatal(err)
	}
	ds := pullN(t, m, 3)
	if string(ds[0].Body) != "7" {
		t.Fatalf("after set to 7 got %q", ds[0].Body)
	}
	for _, d := range ds {
		m.Ack(d)
	}
	// Clamped to the queue's range; saved across a restart.
	if err := b.SetOffset("g", "t", 0, 1000); err != nil {
		t.Fatal(err)
	}
	if err := b.SetOffset("g", "t", 1, -5); err != nil {
		t.Fatal(err)
	}
	m.Leave()
	b.close(t)
	b = openBroker(t, b.dir, testConfig(t))
	if off, ok := b.CommittedOffset("g", "t", 0); !ok || off != 10 {
		t.Fatalf("after restart: offset %d %v, want 10", off, ok)
	}
	for _, c := range []struct {
		topic string
		queue int
		want  error
	}{{"nope", 0, ErrUnknownTopic}, {"t", 2, ErrInvalidQueue}, {"t", -1, ErrInvalidQueue}} {
		if err := b.SetOffset("g", c.topic, c.queue, 0); !errors.Is(err, c.want) {
			t.Errorf("set %s/%d: %v, want %v", c.topic, c.queue, err, c.want)
		}
	}
}
