package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/client"
)

// freeAddr reserves a loopback port for a listener that must keep its
// address across a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// createTopicOnceRegistered creates topic on the broker of a ferry serve
// just started, which registers with its NameServer ns a moment after it
// is ready, and waits for the topic's route.
func createTopicOnceRegistered(ctx context.Context, t *testing.T, admin *client.Admin, ns, topic string, queues int) {
	t.Helper()
	for err := admin.CreateTopic(ctx, topic, queues); err != nil; err = admin.CreateTopic(ctx, topic, queues) {
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitRoute(t, ns, topic)
}

// The broker's state outlives kill -9 in the default (async) flush mode,
// read back from its log: a topic's queue count, a group's committed
// offsets, a delayed message not yet due, an MQTT persistent session with
// its subscription and waiting messages, and a retained message.
func TestStateSurvivesKill9(t *testing.T) {
	bin := buildFerry(t)
	data := filepath.Join(t.TempDir(), "data")
	ns, native, mqttAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	start := func() *ferryProc {
		p := startFerry(t, bin, "serve", "--log-level", "debug", "--data-dir", data, "--namesrv-addr", ns, "--native-addr", native,
			"--mqtt-addr", mqttAddr, "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mqttConnect := func(id string, clean bool, h paho.MessageHandler) paho.Client {
		o := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(id).SetCleanSession(clean).
			SetAutoReconnect(false).SetDefaultPublishHandler(h)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		return c
	}
	mqttWait := func(tok paho.Token, what string) {
		t.Helper()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: %v", what, tok.Error())
		}
	}
	// consume runs group "books" on ledger until stop, and returns what
	// it received, by body.
	consume := func(stop <-chan struct{}, until func(map[string]int) bool) map[string]int {
		got := map[string]int{}
		var mu sync.Mutex
		enough := make(chan struct{})
		var once sync.Once
		c, err := client.NewPushConsumer("books", client.WithNameServers(ns), client.WithConsumeFrom(client.ConsumeFromFirst))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe("ledger", "*", func(_ context.Context, m *client.MessageExt) error {
			mu.Lock()
			defer mu.Unlock()
			got[string(m.Body)]++
			if until(got) {
				once.Do(func() { close(enough) })
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-enough:
		case <-stop:
		case <-ctx.Done():
		}
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		return got
	}

	p := start()
	admin, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	createTopicOnceRegistered(ctx, t, admin, ns, "ledger", 3)
	prod, err := client.NewProducer(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range 9 {
		if _, err := prod.Send(ctx, &client.Message{Topic: "ledger", Body: []byte(fmt.Sprint("entry-", i))}); err != nil {
			t.Fatal(err)
		}
	}
	first := consume(nil, func(got map[string]int) bool { return len(got) == 9 })
	if len(first) != 9 {
		t.Fatalf("before the crash the group got %d of 9", len(first))
	}

	dev := mqttConnect("ledger-dev", false, nil)
	mqttWait(dev.Subscribe("fleet/#", 1, nil), "subscribe")
	dev.Disconnect(100)
	pub := mqttConnect("ledger-pub", true, nil)
	mqttWait(pub.Publish("fleet/door", 1, true, "open"), "publish retained")
	for i := range 5 {
		mqttWait(pub.Publish("fleet/x", 1, false, fmt.Sprint("reading-", i)), "publish")
	}
	pub.Disconnect(100)

	if _, err := prod.Send(ctx, &client.Message{Topic: "ledger", Body: []byte("later"), DeliverAt: time.Now().Add(4 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	// The core writes committed offsets at its flush interval and says so
	// at debug level: the group's 9 messages over 3 queues add up to 9 (its
	// retry queue, when it has committed one, is at 0).
	saved := regexp.MustCompile(`owner=books queues=\d+ sum=9\b`)
	for deadline := time.Now().Add(30 * time.Second); !saved.MatchString(p.log()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the core never saved books' offsets:\n%s", p.log())
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)

	start()
	waitRoute(t, ns, "ledger")
	if ts, err := admin.DescribeTopic(ctx, "ledger"); err != nil || len(ts) != 1 || ts[0].Queues != 3 {
		t.Fatalf("topic ledger after kill -9: %+v, %v; want 3 queues", ts, err)
	}
	// The group resumes past what it had consumed: only the delayed
	// message comes, once.
	grace := make(chan struct{})
	var graceOnce sync.Once
	after := consume(grace, func(got map[string]int) bool {
		if got["later"] > 0 { // room for a wrong redelivery to show
			graceOnce.Do(func() { time.AfterFunc(1500*time.Millisecond, func() { close(grace) }) })
		}
		return false
	})
	if after["later"] != 1 || len(after) != 1 {
		t.Fatalf("after kill -9 the group got %v; want only the delayed message, once", after)
	}

	in := make(chan string, 16)
	back := mqttConnect("ledger-dev", false, func(_ paho.Client, m paho.Message) { in <- string(m.Payload()) })
	defer back.Disconnect(0)
	seen := map[string]bool{}
	for len(seen) < 5 {
		select {
		case s := <-in:
			seen[s] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("the persistent session got %v after kill -9; want reading-0..4", seen)
		}
	}
	retained := make(chan paho.Message, 1)
	late := mqttConnect("ledger-late", true, nil)
	defer late.Disconnect(0)
	mqttWait(late.Subscribe("fleet/door", 1, func(_ paho.Client, m paho.Message) { retained <- m }), "subscribe")
	select {
	case m := <-retained:
		if string(m.Payload()) != "open" || !m.Retained() {
			t.Fatalf("retained after kill -9: %q retained=%v", m.Payload(), m.Retained())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the retained message was lost to kill -9")
	}
}

// A transaction left unknown when the broker is killed with kill -9 is
// still pending after the restart: the broker checks it with the producer
// group, and the message the checker commits is delivered once; one rolled
// back before the kill never is.
func TestPendingTransactionSurvivesKill9(t *testing.T) {
	bin := buildFerry(t)
	data := filepath.Join(t.TempDir(), "data")
	ns, native := freeAddr(t), freeAddr(t)
	start := func() *ferryProc {
		p := startFerry(t, bin, "serve", "--data-dir", data, "--namesrv-addr", ns, "--native-addr", native,
			"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off",
			"--transaction-check-delay", "1s", "--transaction-check-interval", "1s")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := start()
	admin, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	createTopicOnceRegistered(ctx, t, admin, ns, "payments", 2)

	// Before the kill the checker has no verdict: unknown. After it, it
	// answers as the local transactions ended: the rollback is sent
	// one-way and may not have reached the broker before the kill, and
	// then it is the check that drops the message.
	var verdict sync.Mutex
	decided := false
	checker := func(_ context.Context, m *client.MessageExt) client.TransactionState {
		verdict.Lock()
		defer verdict.Unlock()
		switch {
		case !decided:
			return client.TransactionUnknown
		case string(m.Body) == "dropped":
			return client.TransactionRollback
		default:
			return client.TransactionCommit
		}
	}
	txp, err := client.NewTransactionProducer(checker, client.WithNameServers(ns), client.WithGroup("payments-tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer txp.Close()
	send := func(body string, st client.TransactionState) {
		t.Helper()
		if _, got, err := txp.SendInTransaction(ctx, &client.Message{Topic: "payments", Body: []byte(body)},
			func(context.Context, *client.Message, client.SendResult) client.TransactionState { return st }); err != nil || got != st {
			t.Fatalf("send %s: %v, %v", body, got, err)
		}
	}
	send("pending", client.TransactionUnknown)
	send("dropped", client.TransactionRollback)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)

	verdict.Lock()
	decided = true
	verdict.Unlock()
	start()
	got := map[string]int{}
	var mu sync.Mutex
	arrived := make(chan struct{})
	var once sync.Once
	c, err := client.NewPushConsumer("payments-reader", client.WithNameServers(ns), client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("payments", "*", func(_ context.Context, m *client.MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		got[string(m.Body)]++
		if got["pending"] > 0 {
			once.Do(func() { time.AfterFunc(1500*time.Millisecond, func() { close(arrived) }) })
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-arrived:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	if got["pending"] != 1 || len(got) != 1 {
		t.Fatalf("after kill -9 and the check the reader got %v; want the committed message once and nothing else", got)
	}
}
