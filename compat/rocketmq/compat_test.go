// Package rocketmq checks that RocketMQ's own Go client works against Ferry
// unchanged: its producer sends and its push consumer receives through
// Ferry's NameServer and broker. It is a module of its own so that Ferry's
// main module does not depend on that client.
package rocketmq

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/storage"
)

type ferry struct {
	ns     string
	broker *core.Broker
	fe     *native.Server
}

// startFerry runs a store, the core, a NameServer and the native front-end
// in this process, on ports chosen by the system.
func startFerry(t *testing.T) *ferry {
	t.Helper()
	return startFerryAuth(t, nil)
}

// startFerryAuth is startFerry with a broker that checks requests with a
// (nil: none).
func startFerryAuth(t *testing.T, a *auth.Authenticator) *ferry {
	t.Helper()
	return startFerryWith(t, a, core.Config{})
}

// startFerryWith is startFerryAuth with the core's configuration cfg
// (auto-creating topics, logging nowhere).
func startFerryWith(t *testing.T, a *auth.Authenticator, cfg core.Config) *ferry {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := storage.Open(t.TempDir(), storage.Options{SegmentSize: 64 << 20, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AutoCreateTopics, cfg.Logger = true, logger
	b, err := core.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ns := namesrv.New(namesrv.Options{Logger: logger})
	go ns.Serve(nsLn)
	brLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fe := native.New(b, native.Options{Auth: a, Logger: logger})
	reg, err := cluster.NewRegistrar(b, cluster.RegistrarOptions{Identity: cluster.Identity{Name: "broker-a"},
		NameServers: []string{nsLn.Addr().String()}, Interval: 200 * time.Millisecond, Endpoint: fe, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	reg.Start()
	go fe.Serve(brLn)
	t.Cleanup(func() {
		reg.Close()
		fe.Close()
		ns.Close()
		b.Close()
		st.Close()
	})
	return &ferry{ns: nsLn.Addr().String(), broker: b, fe: fe}
}

// waitForRoute waits until the NameServer has a route for topic: the
// broker registers every 200 ms here.
func waitForRoute(t *testing.T, ns, topic string) {
	t.Helper()
	a, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitForRoute(ctx, topic); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startProducer starts a producer on the NameServer ns, retrying a send
// twice unless opts say otherwise, shut down when the test ends.
func startProducer(t *testing.T, ns string, opts ...producer.Option) rocketmq.Producer {
	t.Helper()
	p, err := rocketmq.NewProducer(append([]producer.Option{producer.WithNameServer([]string{ns}), producer.WithRetry(2)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() })
	return p
}

// startPushConsumer starts a push consumer on the NameServer ns of topic
// with sel, from the oldest message, that hands each batch to consume; it
// is shut down when the test ends.
func startPushConsumer(t *testing.T, ns, topic string, sel consumer.MessageSelector,
	consume func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error), opts ...consumer.Option) rocketmq.PushConsumer {
	t.Helper()
	c, err := rocketmq.NewPushConsumer(append([]consumer.Option{consumer.WithNameServer([]string{ns}),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, sel, consume); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	return c
}

func TestRocketMQGoClient(t *testing.T) {
	rlog.SetLogLevel("error")
	f := startFerry(t)
	if _, err := f.broker.CreateTopic("TopicTest", 4); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "TopicTest")

	p := startProducer(t, f.ns, producer.WithGroupName("compat-producer"))

	const n = 40
	for i := 0; i < n; i++ {
		tag := "TagA"
		if i%2 == 1 {
			tag = "TagB"
		}
		msg := primitive.NewMessage("TopicTest", []byte(fmt.Sprint("hello ", i))).WithTag(tag).WithKeys([]string{fmt.Sprint("k", i)})
		res, err := p.SendSync(context.Background(), msg)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send %d: %v %v", i, res, err)
		}
	}

	var mu sync.Mutex
	got := map[string]string{}
	startPushConsumer(t, f.ns, "TopicTest", consumer.MessageSelector{Type: consumer.TAG, Expression: "TagA"},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				got[string(m.Body)] = m.GetTags()
			}
			return consumer.ConsumeSuccess, nil
		}, consumer.WithGroupName("compat-consumer"), consumer.WithConsumerModel(consumer.Clustering))
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		count := len(got)
		mu.Unlock()
		if count >= n/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d TagA messages", count, n/2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("received %d TagA messages of %d sent", len(got), n)
	for body, tag := range got {
		if tag != "TagA" {
			t.Fatalf("%q has tag %q: the filter let it through", body, tag)
		}
	}
}
