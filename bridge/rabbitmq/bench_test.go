package rabbitmq

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/internal/rabbittest"
)

// BenchmarkOutbound measures messages/s into a durable RabbitMQ queue
// (persistent messages, publisher confirms, a window of 256, 512-byte
// bodies) two ways, in alternating rounds so that both see the same disk
// (each goes first in half of them):
// "raw" is a plain client publisher; "bridge" is an outbound bridge carrying
// the same number of messages, stored in Ferry beforehand (not timed), on a
// new connection each round (timed). It reports both rates and the
// bridge's share of the raw one:
//
//	go test -run '^$' -bench Outbound -benchtime 40000x ./bridge/rabbitmq
func BenchmarkOutbound(b *testing.B) {
	const window, size, rounds = 256, 512, 8
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	r := newRabbit(b)
	x := r.exchange()
	r.queue(nil, x, "devices.#")
	raw := newRawPublisher(b, r.url, window)
	f := openFerryWith(b, b.TempDir(), 0) // offsets saved every second, as in production
	cfg := bridgeConfig("bench", Outbound, r.url, "devices")
	cfg.Exchange, cfg.Window = x, window

	var rawTime, bridgeTime time.Duration
	per := max(b.N/rounds, 1)
	b.ResetTimer()
	for round := range rounds {
		runRaw := func() {
			start := time.Now()
			raw.publish(b, x, per, body)
			rawTime += time.Since(start)
		}
		if round%2 == 0 { // half the rounds each way round: neither goes first always
			runRaw()
		}
		b.StopTimer()
		batch := make([]*core.Message, 0, 64)
		for i := range per {
			batch = append(batch, &core.Message{Topic: "devices", Subject: fmt.Sprintf("%d/telemetry", i%8), Body: body})
			if len(batch) == cap(batch) || i == per-1 {
				if _, err := f.broker.PublishBatch(context.Background(), batch, core.PublishOptions{Queue: core.QueueAuto}); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		// Let Ferry's own fsync of what was just stored pass: on one disk
		// it would slow RabbitMQ's, which the raw publisher does not pay.
		time.Sleep(500 * time.Millisecond)
		b.StartTimer()
		start := time.Now()
		br, err := New(f.broker, cfg, testLogger(b)) // a new connection each round, timed
		if err != nil {
			b.Fatal(err)
		}
		br.Start()
		for br.Status().Forwarded < uint64(per) {
			time.Sleep(200 * time.Microsecond)
		}
		bridgeTime += time.Since(start)
		b.StopTimer()
		br.Close()
		b.StartTimer()
		if round%2 == 1 {
			runRaw()
		}
	}
	rawRate := float64(per*rounds) / rawTime.Seconds()
	bridgeRate := float64(per*rounds) / bridgeTime.Seconds()
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(bridgeRate, "bridge-msgs/s")
	b.ReportMetric(100*bridgeRate/rawRate, "bridge-%-of-raw")
}

// rawPublisher publishes with confirms, at most window unconfirmed.
type rawPublisher struct {
	ch     *amqp.Channel
	window int
	seq    int
}

func newRawPublisher(b *testing.B, url string, window int) *rawPublisher {
	_, ch := rabbittest.Channel(b, url)
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	return &rawPublisher{ch: ch, window: window}
}

// publish sends n messages like the bridge's (same headers) and waits for
// every confirm.
func (p *rawPublisher) publish(b *testing.B, exchange string, n int, body []byte) {
	ring := make([]*amqp.DeferredConfirmation, 0, p.window)
	for range n {
		if len(ring) == p.window {
			if !ring[0].Wait() {
				b.Fatal("nacked")
			}
			ring = ring[1:]
		}
		p.seq++
		s := p.seq % 8
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, fmt.Sprintf("devices.%d.telemetry", s), true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body, MessageId: fmt.Sprint(p.seq),
				Headers: amqp.Table{HeaderSubject: fmt.Sprintf("%d/telemetry", s), HeaderTopic: "devices", HeaderHops: int32(1)}})
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
}
