package rabbitmq

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
)

// BenchmarkOutbound measures messages/s into a durable RabbitMQ queue
// (persistent messages, publisher confirms, a window of 256, 512-byte
// bodies): "raw" is a plain client publisher, "bridge" is an outbound bridge
// draining the same number of messages stored in Ferry beforehand. Run both
// in one go, with a fixed count:
//
//	go test -run '^$' -bench Outbound -benchtime 50000x ./bridge/rabbitmq
func BenchmarkOutbound(b *testing.B) {
	const window, size = 256, 512
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}

	b.Run("raw", func(b *testing.B) {
		r := newRabbit(b)
		x := r.exchange()
		r.queue(nil, x, "devices.#")
		conn, err := amqp.Dial(r.url)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			b.Fatal(err)
		}
		ring := make([]*amqp.DeferredConfirmation, 0, window)
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			if len(ring) == window {
				if !ring[0].Wait() {
					b.Fatal("nacked")
				}
				ring = ring[1:]
			}
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), x, fmt.Sprintf("devices.%d.telemetry", i%8), true, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body, MessageId: fmt.Sprint(i),
					Headers: amqp.Table{HeaderSubject: fmt.Sprintf("%d/telemetry", i%8), HeaderTopic: "devices", HeaderHops: int32(1)}})
			if err != nil {
				b.Fatal(err)
			}
			ring = append(ring, dc)
		}
		for _, dc := range ring {
			if !dc.Wait() {
				b.Fatal("nacked")
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	b.Run("bridge", func(b *testing.B) {
		r := newRabbit(b)
		x := r.exchange()
		r.queue(nil, x, "devices.#")
		f := openFerry(b, b.TempDir())
		batch := make([]*core.Message, 0, 64)
		for i := range b.N {
			batch = append(batch, &core.Message{Topic: "devices", Subject: fmt.Sprintf("%d/telemetry", i%8), Body: body})
			if len(batch) == cap(batch) || i == b.N-1 {
				if _, err := f.broker.PublishBatch(context.Background(), batch, core.PublishOptions{Queue: core.QueueAuto}); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		cfg := bridgeConfig("bench", Outbound, r.url, "devices")
		cfg.Exchange, cfg.Window = x, window
		br, err := New(f.broker, cfg, testLogger(b))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		br.Start()
		for br.Status().Forwarded < uint64(b.N) {
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		b.StopTimer()
		br.Close()
	})
}
