package amqp

import (
	"context"
	"fmt"
	"sync"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The load of bench/peers --amqp-frontend, in one process so that a CPU
// profile shows the front-end's share (store with async flush):
//
//	go test -run '^$' -bench . -benchtime 200000x -cpuprofile cpu.out ./frontends/amqp/
//
// Publish: 4 publishers, each on its own connection, confirms with a
// window of 1,024, to a durable direct exchange bound to a durable queue;
// one op = one message confirmed. Consume: one consumer, prefetch 1,000,
// one multiple ack per 100 deliveries, reads b.N messages published
// before the timer started; one op = one message delivered.

const (
	benchPublishers = 4
	benchWindow     = 1024
)

func BenchmarkPublishConfirmed(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			f := startFerry(b, Config{})
			benchDeclare(b, f)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			benchPublish(b, f, size, b.N)
		})
	}
}

func BenchmarkConsume(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			f := startFerry(b, Config{})
			benchDeclare(b, f)
			benchPublish(b, f, size, b.N)
			ch := openChannel(b, f.dial(b))
			if err := ch.Qos(1000, 0, false); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			ds, err := ch.Consume("bench", "", false, false, false, false, nil)
			if err != nil {
				b.Fatal(err)
			}
			for n := 1; n <= b.N; n++ {
				d := recv(b, ds)
				if n%100 == 0 || n == b.N {
					if err := d.Ack(true); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func benchDeclare(b *testing.B, f *ferry) {
	ch := openChannel(b, f.dial(b))
	defer ch.Close()
	if _, err := ch.QueueDeclare("bench", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.ExchangeDeclare("bench-x", "direct", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind("bench", "k", "bench-x", false, nil); err != nil {
		b.Fatal(err)
	}
}

// benchPublish publishes n messages of size bytes from benchPublishers
// connections and returns once all are confirmed.
func benchPublish(b *testing.B, f *ferry, size, n int) {
	body := make([]byte, size)
	var wg sync.WaitGroup
	for p := range benchPublishers {
		count := n / benchPublishers
		if p < n%benchPublishers {
			count++
		}
		ch := openChannel(b, f.dial(b))
		if err := ch.Confirm(false); err != nil {
			b.Fatal(err)
		}
		confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, benchWindow))
		window := make(chan struct{}, benchWindow)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range count {
				c, ok := <-confirms
				if !ok {
					b.Error("channel closed before every confirm came")
					return
				}
				if !c.Ack {
					b.Errorf("publish %d nacked", c.DeliveryTag)
				}
				<-window
			}
		}()
		go func() {
			defer wg.Done()
			for range count {
				window <- struct{}{}
				if err := ch.PublishWithContext(context.Background(), "bench-x", "k", false, false,
					amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: body}); err != nil {
					b.Error(err)
					ch.Close() // ends the confirm loop
					return
				}
			}
		}()
	}
	wg.Wait()
}
