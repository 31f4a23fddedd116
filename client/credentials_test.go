package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/authtest"
	"github.com/ferrymq/ferry/remoting"
)

// TestCredentials: against brokers that check credentials, WithCredentials
// carries them on every request (sends, heartbeats, pulls, offsets) and
// the topic rules apply; without them a send fails (not retried: see
// TestRetryable) and a consumer does not start.
func TestCredentials(t *testing.T) {
	a := authtest.New(t, map[string]string{"alice": "secret"}, "user alice\ntopic readwrite orders/#\ngroup cg\n")
	f := startFerryWith(t, &testFerry{auth: a})
	f.createTopic(t, "orders", 4)
	f.createTopic(t, "payroll", 1)
	ctx := t.Context()

	p := f.newProducer(t, WithCredentials("alice", "secret"))
	for i := range 10 {
		if _, err := p.Send(ctx, &Message{Topic: "orders", Tag: "eu", Body: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var r recorder
	f.startConsumer(t, "cg", "orders", "*", r.handle, WithCredentials("alice", "secret"))
	eventually(t, 10*time.Second, func() bool { return r.len() == 10 }, "the 10 messages")

	_, err := p.Send(ctx, &Message{Topic: "payroll", Body: []byte("x")})
	if !errors.Is(err, remoting.ErrNoPermission) || !strings.Contains(err.Error(), "publish to payroll") {
		t.Fatalf("send to a topic the ACL denies: %v", err)
	}
	anon := f.newProducer(t)
	_, err = anon.Send(ctx, &Message{Topic: "orders", Body: []byte("x")})
	if !errors.Is(err, remoting.ErrNoPermission) || !strings.Contains(err.Error(), "anonymous access is not allowed") {
		t.Fatalf("send without credentials: %v", err)
	}
	wrong := f.newProducer(t, WithCredentials("alice", "guess"))
	_, err = wrong.Send(ctx, &Message{Topic: "orders", Body: []byte("x")})
	if !errors.Is(err, remoting.ErrNoPermission) || !strings.Contains(err.Error(), "bad username or password") {
		t.Fatalf("send with a wrong password: %v", err)
	}
	c, err := NewPushConsumer("cg2", f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe("orders", "*", r.handle)
	if err := c.Start(ctx); !errors.Is(err, remoting.ErrNoPermission) || !strings.Contains(err.Error(), "anonymous access") {
		t.Fatalf("a consumer without credentials started: %v", err)
	}
	if _, err := NewProducer(WithCredentials("", "x")); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("empty username: %v", err)
	}
}
