package amqp

import (
	"context"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

func TestDeclareBindPublishConsume(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	q, err := ch.QueueDeclare("orders", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("shop", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "order.created", "shop", false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pub := amqp091.Publishing{ContentType: "text/plain", Headers: amqp091.Table{"n": int32(7)}, Body: []byte("hello")}
	if err := ch.PublishWithContext(ctx, "shop", "order.created", false, false, pub); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "shop", "order.deleted", false, false, pub); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "", "orders", false, false, amqp091.Publishing{Body: []byte("direct")}); err != nil {
		t.Fatal(err)
	}
	d := recv(t, ds)
	if string(d.Body) != "hello" && string(d.Body) != "direct" {
		t.Fatalf("got %q", d.Body)
	}
	d2 := recv(t, ds)
	for _, x := range []amqp091.Delivery{d, d2} {
		switch string(x.Body) {
		case "hello":
			if x.Exchange != "shop" || x.RoutingKey != "order.created" || x.ContentType != "text/plain" || x.Headers["n"] != int32(7) {
				t.Fatalf("delivery %+v", x)
			}
		case "direct":
			if x.Exchange != "" || x.RoutingKey != "orders" {
				t.Fatalf("delivery %+v", x)
			}
		default:
			t.Fatalf("got %q", x.Body)
		}
		if err := x.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	noDelivery(t, ds, 300*time.Millisecond)
}

func TestGetAndConfirms(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("jobs", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 100))
	for i := 0; i < 10; i++ {
		if err := ch.PublishWithContext(context.Background(), "", "jobs", false, false, amqp091.Publishing{Body: []byte{byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 10; i++ {
		select {
		case c := <-confirms:
			if !c.Ack || c.DeliveryTag != uint64(i) {
				t.Fatalf("confirm %+v, want ack of %d", c, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no confirm")
		}
	}
	got := map[string]bool{}
	for i := 0; i < 10; i++ {
		d, ok, err := ch.Get("jobs", false)
		if err != nil || !ok {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
		got[string(d.Body)] = true
		d.Ack(false)
	}
	if len(got) != 10 {
		t.Fatalf("got %v", got)
	}
	if _, ok, err := ch.Get("jobs", false); ok || err != nil {
		t.Fatalf("get on an empty queue: %v %v", ok, err)
	}
}
