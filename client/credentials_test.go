package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
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
	if !errors.Is(err, remoting.ErrNoPermission) || !strings.Contains(err.Error(), "bad access key or signature") {
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

	// The signing key works in place of the password (a client configured
	// with ferry passwd --signing-key's output).
	keyed := f.newProducer(t, WithSigningKey("alice", remoting.SigningKey("alice", "secret")))
	if _, err := keyed.Send(ctx, &Message{Topic: "orders", Body: []byte("k")}); err != nil {
		t.Fatalf("send with the signing key: %v", err)
	}
	for _, o := range []Option{WithSigningKey("", "k"), WithSigningKey("alice", "")} {
		if _, err := NewProducer(o); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("empty user or key: %v", err)
		}
	}
}

// fakeBroker is a plain TCP listener posing as a broker: it records every
// byte clients send and refuses every request.
type fakeBroker struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	raw   []byte
	reqs  []*remoting.Command
	conns []net.Conn
}

func startFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBroker{ln: ln}
	fb.wg.Add(1)
	go func() {
		defer fb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.mu.Lock()
			fb.conns = append(fb.conns, c)
			fb.mu.Unlock()
			fb.wg.Add(1)
			go func() {
				defer fb.wg.Done()
				fb.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		fb.mu.Lock()
		for _, c := range fb.conns {
			c.Close()
		}
		fb.mu.Unlock()
		fb.wg.Wait()
	})
	return fb
}

func (fb *fakeBroker) Write(p []byte) (int, error) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.raw = append(fb.raw, p...)
	return len(p), nil
}

func (fb *fakeBroker) serve(c net.Conn) {
	r := bufio.NewReader(io.TeeReader(c, fb))
	for {
		req, err := remoting.ReadCommand(r, remoting.MaxFrame)
		if err != nil {
			return
		}
		fb.mu.Lock()
		fb.reqs = append(fb.reqs, req)
		fb.mu.Unlock()
		if req.IsOneway() {
			continue
		}
		frame, err := remoting.AppendFrame(nil, req.Response(remoting.NoPermission, "posing as a broker"))
		if err != nil {
			return
		}
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

// captured returns what the clients sent so far.
func (fb *fakeBroker) captured() ([]byte, []*remoting.Command) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return bytes.Clone(fb.raw), slices.Clone(fb.reqs)
}

// TestCredentialsNeverOnTheWire: a party posing as a broker (registered at
// the NameServer in its place) receives signed requests from a producer and
// a consumer with WithCredentials, never the password or the signing key.
// What it can do with a request it captured is replay that one request to
// the real broker, within FerrySignedAt's window; a changed copy is refused.
func TestCredentialsNeverOnTheWire(t *testing.T) {
	const password = "correct horse battery staple"
	a := authtest.New(t, map[string]string{"alice": password}, "user alice\ntopic readwrite orders/#\n")
	fb := startFakeBroker(t)
	f := startFerryWith(t, &testFerry{auth: a, advertise: fb.ln.Addr().String()})
	f.createTopic(t, "orders", 1)
	ctx := t.Context()

	p := f.newProducer(t, WithCredentials("alice", password))
	if _, err := p.Send(ctx, &Message{Topic: "orders", Body: []byte("to the fake")}); err == nil || !strings.Contains(err.Error(), "posing as a broker") {
		t.Fatalf("send to the fake broker: %v", err)
	}
	c, err := NewPushConsumer("cg", f.opts(WithCredentials("alice", password))...)
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe("orders", "*", func(context.Context, *MessageExt) error { return nil })
	if err := c.Start(ctx); err == nil {
		c.Close()
		t.Fatal("a consumer started against the fake broker")
	}

	raw, reqs := fb.captured()
	var send *remoting.Command
	for _, req := range reqs {
		if req.Ext(remoting.FieldAccessKey) != "alice" || !req.Signed() || req.Ext(remoting.FieldSignedAt) == "" || req.Ext(remoting.FieldPassword) != "" {
			t.Fatalf("request code %d is not signed by alice: %v", req.Code, req.Fields)
		}
		if req.Code == remoting.SendMessageV2 {
			send = req
		}
	}
	if send == nil || len(reqs) < 2 {
		t.Fatalf("captured %d requests, no send among them", len(reqs))
	}
	for what, secret := range map[string]string{"password": password, "signing key": remoting.SigningKey("alice", password)} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("the %s went over the wire", what)
		}
	}

	real, err := remoting.Dial(ctx, f.brokers["broker-a"].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	resp, err := real.Invoke(ctx, send)
	if err != nil || resp.Code != remoting.Success {
		t.Fatalf("replay of the captured send: %v %v", resp, err)
	}
	send.Body = []byte("changed")
	resp, err = real.Invoke(ctx, send)
	if err != nil || resp.Code != remoting.NoPermission {
		t.Fatalf("changed copy of the captured send: %v %v", resp, err)
	}
}
