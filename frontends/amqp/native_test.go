package amqp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/frontends/native/nativetest"
)

// Over the native protocol: AMQP publishes to amq.topic reach a native
// consumer group (the client SDK) and an AMQP queue bound to the same
// topic, and each gets every message once with its subject and
// properties; a native producer's message reaches the AMQP queue too.
func TestAMQPAndNativeGroupShareATopic(t *testing.T) {
	f := startFerry(t, Config{})
	ns := nativetest.Serve(t, f.core, testLogger(t))
	if _, err := f.core.CreateTopic("orders", 4); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.WaitForRoute(ctx, "orders"); err != nil {
		t.Fatal(err)
	}

	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("orders-audit", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("orders-audit", "orders.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("orders-audit", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	const n = 200
	var mu sync.Mutex
	native := map[string]*client.MessageExt{}
	all := make(chan struct{})
	consumer, err := client.NewPushConsumer("billing", client.WithNameServers(ns),
		client.WithConsumeFrom(client.ConsumeFromFirst), client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	err = consumer.Subscribe("orders", "*", func(_ context.Context, m *client.MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := native[string(m.Body)]; dup {
			t.Errorf("native group got %q twice", m.Body)
		}
		native[string(m.Body)] = m
		if len(native) == n+1 {
			close(all)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()

	pub := openChannel(t, f.dial(t))
	if err := pub.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		dc, err := pub.PublishWithDeferredConfirm("amq.topic", fmt.Sprintf("orders.eu.%d", i%3), false, false,
			amqp091.Publishing{ContentType: "text/plain", Headers: amqp091.Table{"tenant": "acme"}, Body: []byte(fmt.Sprintf("o%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if i == n-1 {
			if ok, err := dc.WaitContext(ctx); !ok || err != nil {
				t.Fatalf("last publish not confirmed: %v", err)
			}
		}
	}
	producer, err := client.NewProducer(client.WithNameServers(ns), client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, err := producer.Send(ctx, &client.Message{Topic: "orders", Tag: "us/native", Body: []byte("from-native")}); err != nil {
		t.Fatal(err)
	}

	amqpGot := map[string]amqp091.Delivery{}
	for len(amqpGot) < n+1 {
		d := recv(t, ds)
		if _, dup := amqpGot[string(d.Body)]; dup {
			t.Fatalf("AMQP queue got %q twice", d.Body)
		}
		amqpGot[string(d.Body)] = d
		d.Ack(false)
	}
	noDelivery(t, ds, 300*time.Millisecond)
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("native group got %d of %d messages", len(native), n+1)
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show up
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		body := fmt.Sprintf("o%d", i)
		m, d := native[body], amqpGot[body]
		if m == nil || d.Body == nil {
			t.Fatalf("%s: native got it %v, AMQP got it %v", body, m != nil, d.Body != nil)
		}
		if want := fmt.Sprintf("eu/%d", i%3); m.Tag != want || m.Properties["tenant"] != "acme" {
			t.Fatalf("native got %s with subject %q, properties %v; want subject %q and tenant acme", body, m.Tag, m.Properties, want)
		}
		if want := fmt.Sprintf("orders.eu.%d", i%3); d.RoutingKey != want || d.Headers["tenant"] != "acme" || d.ContentType != "text/plain" {
			t.Fatalf("AMQP got %s with key %q, headers %v, content type %q", body, d.RoutingKey, d.Headers, d.ContentType)
		}
	}
	if d := amqpGot["from-native"]; d.RoutingKey != "orders.us.native" || d.Exchange != "amq.topic" {
		t.Fatalf("native producer's message reached AMQP as exchange %q key %q", d.Exchange, d.RoutingKey)
	}
	if m := native["from-native"]; m == nil || m.Tag != "us/native" {
		t.Fatalf("the native group did not get the native producer's message")
	}
}
