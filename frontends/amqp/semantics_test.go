package amqp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

func publish(t testing.TB, ch *amqp091.Channel, exchange, key string, mandatory bool, body string) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), exchange, key, mandatory, false, amqp091.Publishing{Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

func TestMandatoryReturn(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp091.Return, 1))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
	publish(t, ch, "amq.direct", "nobody", true, "lost")
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.Exchange != "amq.direct" || r.RoutingKey != "nobody" || string(r.Body) != "lost" {
			t.Fatalf("return %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return")
	}
	if c := <-confirms; !c.Ack {
		t.Fatalf("confirm %+v after a return, want an ack", c)
	}
}

func TestRejectNackRequeue(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("work", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "work", false, "a")
	ds, err := ch.Consume("work", "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, ds)
	if d.Redelivered {
		t.Fatal("first delivery marked redelivered")
	}
	d.Reject(true)
	d = recv(t, ds)
	if !d.Redelivered || string(d.Body) != "a" {
		t.Fatalf("after reject with requeue: %q redelivered=%v", d.Body, d.Redelivered)
	}
	d.Nack(false, true)
	d = recv(t, ds)
	if !d.Redelivered {
		t.Fatal("after nack with requeue: not redelivered")
	}
	d.Nack(false, false) // dropped
	noDelivery(t, ds, 300*time.Millisecond)

	// multiple
	for i := 0; i < 3; i++ {
		publish(t, ch, "", "work", false, fmt.Sprint(i))
	}
	var last amqp091.Delivery
	for i := 0; i < 3; i++ {
		last = recv(t, ds)
	}
	last.Nack(true, false)
	noDelivery(t, ds, 300*time.Millisecond)
	if _, ok, _ := ch.Get("work", true); ok {
		t.Fatal("a message left after nack multiple without requeue")
	}
}

func TestDeadLetterExchange(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("dead", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("live", false, false, false, false, amqp091.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "live", false, "m")
	d, ok, err := ch.Get("live", false)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	d.Reject(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok, err := ch.Get("dead", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(d.Body) != "m" || d.Headers["x-first-death-reason"] != "rejected" {
				t.Fatalf("dead letter %+v", d)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPrefetch(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("pf", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		publish(t, ch, "", "pf", false, fmt.Sprint(i))
	}
	if err := ch.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("pf", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := recv(t, ds), recv(t, ds)
	noDelivery(t, ds, 300*time.Millisecond) // two unacknowledged: no third
	a.Ack(false)
	c := recv(t, ds)
	noDelivery(t, ds, 200*time.Millisecond)
	b.Ack(false)
	c.Ack(false)
	for i := 0; i < 7; i++ {
		recv(t, ds).Ack(false)
	}
}

func TestTransactions(t *testing.T) {
	f := startFerry(t, Config{})
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("txq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "txq", false, "rolled back")
	if err := ch.TxRollback(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "txq", false, "committed")
	if _, ok, _ := ch.Get("txq", true); ok {
		t.Fatal("a publish visible before commit")
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get("txq", false)
	if !ok || err != nil || string(d.Body) != "committed" {
		t.Fatalf("after commit: %q %v %v", d.Body, ok, err)
	}
	d.Ack(false)
	if err := ch.TxRollback(); err != nil { // the ack is rolled back: the message comes again
		t.Fatal(err)
	}
	d, ok, _ = ch.Get("txq", false)
	if !ok || !d.Redelivered {
		t.Fatalf("after an ack rolled back: %v redelivered=%v", ok, d.Redelivered)
	}
	d.Ack(false)
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ch.Get("txq", true); ok {
		t.Fatal("a message left after its ack was committed")
	}
}

func TestConsumerCancelledOnQueueDelete(t *testing.T) {
	f := startFerry(t, Config{})
	c := f.dial(t)
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare("doomed", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cancels := ch.NotifyCancel(make(chan string, 1))
	if _, err := ch.Consume("doomed", "watcher", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	other := openChannel(t, c)
	if _, err := other.QueueDelete("doomed", false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "watcher" {
			t.Fatalf("cancel of %q", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.cancel")
	}
}

func TestExclusiveQueueGoesWithItsConnection(t *testing.T) {
	f := startFerry(t, Config{})
	c1 := f.dial(t)
	ch1 := openChannel(t, c1)
	q, err := ch1.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch2 := openChannel(t, f.dial(t))
	_, err = ch2.QueueDeclarePassive(q.Name, false, false, true, false, nil)
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != 405 {
		t.Fatalf("another connection's passive declare: %v, want 405 RESOURCE_LOCKED", err)
	}
	c1.Close()
	ch3 := openChannel(t, f.dial(t))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = ch3.QueueDeclarePassive(q.Name, false, false, true, false, nil)
		if errors.As(err, &ae) && ae.Code == 404 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("exclusive queue still there after its connection closed: %v", err)
		}
		ch3 = openChannel(t, f.dial(t))
		time.Sleep(20 * time.Millisecond)
	}
}

func TestChannelErrors(t *testing.T) {
	f := startFerry(t, Config{})
	c := f.dial(t)
	for _, tc := range []struct {
		name string
		do   func(*amqp091.Channel) error
		code int
	}{
		{"missing queue", func(ch *amqp091.Channel) error {
			_, err := ch.QueueDeclarePassive("nope", false, false, false, false, nil)
			return err
		}, 404},
		{"missing exchange", func(ch *amqp091.Channel) error { return ch.QueueBind("q", "k", "nope", false, nil) }, 404},
		{"inequivalent", func(ch *amqp091.Channel) error {
			if _, err := ch.QueueDeclare("eq", false, false, false, false, nil); err != nil {
				return err
			}
			_, err := ch.QueueDeclare("eq", true, false, false, false, nil)
			return err
		}, 406},
		{"unknown tag", func(ch *amqp091.Channel) error {
			// basic.ack has no reply: the channel's close says it was refused.
			closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
			ch.Ack(99, false)
			select {
			case e := <-closed:
				if e == nil {
					return errors.New("channel closed without an error")
				}
				return e
			case <-time.After(10 * time.Second):
				return errors.New("channel still open 10 s after acking an unknown tag")
			}
		}, 406},
		{"reserved name", func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare("amq.mine", "direct", false, false, false, false, nil)
		}, 403},
	} {
		ch := openChannel(t, c)
		err := tc.do(ch)
		var ae *amqp091.Error
		if !errors.As(err, &ae) || ae.Code != tc.code {
			t.Errorf("%s: %v, want %d", tc.name, err, tc.code)
		}
	}
	// The connection outlived its channels' errors.
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare("fine", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDurableStateSurvivesRestart(t *testing.T) {
	f := startFerry(t, Config{})
	f.sync = true
	f.restart()
	ch := openChannel(t, f.dial(t))
	if err := ch.ExchangeDeclare("events", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("audit", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("audit", "user.*", "events", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 10))
	for i := 0; i < 5; i++ {
		publish(t, ch, "events", "user.created", false, fmt.Sprint(i))
	}
	for i := 0; i < 5; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatal("nack")
		}
	}
	f.restart()
	ch = openChannel(t, f.dial(t))
	if err := ch.ExchangeDeclarePassive("events", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("audit", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i := 0; i < 5; i++ {
		d := recv(t, ds)
		got[string(d.Body)] = true
		d.Ack(false)
	}
	publish(t, ch, "events", "user.deleted", false, "after")
	if d := recv(t, ds); string(d.Body) != "after" {
		t.Fatalf("after restart the binding took %q", d.Body)
	}
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
}
