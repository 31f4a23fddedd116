// Command peers measures Ferry beside RabbitMQ and NATS JetStream on this
// machine, in one run, with the same load: --count messages of --size
// bytes, confirmed publishes from --producers goroutines, then a consume of
// them all. Peers that cannot be reached are skipped with a note.
//
//	cd bench/peers && go run . [--count N] [--size B] [--amqp URL] [--nats-server PATH]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/storage"
)

var (
	count     = flag.Int("count", 200000, "messages")
	size      = flag.Int("size", 128, "body bytes")
	producers = flag.Int("producers", 16, "concurrent publishers")
	amqpURL   = flag.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ to measure")
	natsBin   = flag.String("nats-server", "nats-server", "nats-server binary to start with JetStream")
)

type result struct {
	system           string
	produce, consume float64 // msg/s
	note             string
}

func main() {
	flag.Parse()
	body := make([]byte, *size)
	var results []result
	results = append(results, measureFerry(body, 1), measureFerry(body, 0), measureFerry(body, 64))
	results = append(results, measureRabbit(body, false), measureRabbit(body, true))
	results = append(results, measureNATS(body))
	fmt.Printf("\n%d messages of %d bytes, %d publishers, confirmed publishes; then one consumer reads them all\n\n", *count, *size, *producers)
	fmt.Println("| system | publish msg/s | consume msg/s | note |")
	fmt.Println("|---|---:|---:|---|")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %.0f | %s |\n", r.system, r.produce, r.consume, r.note)
	}
}

// parallel runs f for count items over producers goroutines and returns the rate.
func parallel(f func() error) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	start := time.Now()
	for range *producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*count) {
				if err := f(); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return 0, err
	}
	return float64(*count) / time.Since(start).Seconds(), nil
}

func measureFerry(body []byte, batch int) result {
	name := "Ferry (sync sends)"
	switch {
	case batch == 0:
		name = "Ferry (async sends, acked when stored)"
	case batch > 1:
		name = fmt.Sprintf("Ferry (batches of %d, sync)", batch)
	}
	r := result{system: name}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "ferry-peers")
	defer os.RemoveAll(dir)
	st, err := storage.Open(dir, storage.Options{SegmentSize: 256 << 20, Logger: logger, RetentionAge: -1, RetentionDiskRatio: -1})
	if err != nil {
		r.note = err.Error()
		return r
	}
	defer st.Close()
	b, _ := core.New(st, core.Config{AutoCreateTopics: true, Logger: logger})
	defer b.Close()
	nsLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ns := namesrv.New(namesrv.Options{Logger: logger})
	go ns.Serve(nsLn)
	defer ns.Close()
	brLn, _ := net.Listen("tcp", "127.0.0.1:0")
	fe := native.New(b, native.Options{NameServers: []string{nsLn.Addr().String()}, RegisterInterval: 100 * time.Millisecond, Logger: logger})
	go fe.Serve(brLn)
	defer fe.Close()
	b.CreateTopic("bench", 8)
	ctx := context.Background()
	if err := waitForRoute(ctx, nsLn.Addr().String(), logger); err != nil {
		r.note = err.Error()
		return r
	}
	p, err := client.NewProducer(client.WithNameServers(nsLn.Addr().String()), client.WithLogger(logger))
	if err != nil {
		r.note = err.Error()
		return r
	}
	defer p.Close()
	msgs := make([]*client.Message, max(1, batch))
	for i := range msgs {
		msgs[i] = &client.Message{Topic: "bench", Body: body}
	}
	saved := *count
	*count /= max(1, batch)
	var async sync.WaitGroup
	var asyncErr atomic.Value
	r.produce, err = parallel(func() error {
		switch {
		case batch == 0: // pipelined: the producer bounds what is in flight
			async.Add(1)
			p.SendAsync(ctx, msgs[0], func(_ client.SendResult, err error) {
				if err != nil {
					asyncErr.CompareAndSwap(nil, err)
				}
				async.Done()
			})
			return nil
		case batch == 1:
			_, err := p.Send(ctx, msgs[0])
			return err
		default:
			_, err := p.SendBatch(ctx, msgs)
			return err
		}
	})
	if batch == 0 {
		start := time.Now()
		async.Wait() // every send acknowledged
		r.produce = float64(saved) / (float64(saved)/r.produce + time.Since(start).Seconds())
		if e, _ := asyncErr.Load().(error); e != nil && err == nil {
			err = e
		}
	}
	*count = saved
	r.produce *= float64(max(1, batch))
	if err != nil {
		r.note = err.Error()
		return r
	}
	var got atomic.Int64
	done := make(chan struct{})
	c, _ := client.NewPushConsumer("peers", client.WithNameServers(nsLn.Addr().String()), client.WithLogger(logger), client.WithPullBatch(256))
	c.Subscribe("bench", "*", func(context.Context, *client.MessageExt) error {
		if got.Add(1) == int64(*count) {
			close(done)
		}
		return nil
	})
	start := time.Now()
	c.Start(ctx)
	<-done
	r.consume = float64(*count) / time.Since(start).Seconds()
	c.Close()
	return r
}

// waitForRoute waits until the NameServer routes the bench topic.
func waitForRoute(ctx context.Context, ns string, logger *slog.Logger) error {
	a, err := client.NewAdmin(client.WithNameServers(ns), client.WithLogger(logger))
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return a.WaitForRoute(ctx, "bench")
}

func measureRabbit(body []byte, quorum bool) result {
	r := result{system: "RabbitMQ (durable classic queue, confirms)"}
	qtype := "classic"
	if quorum {
		r.system, qtype = "RabbitMQ (quorum queue, confirms)", "quorum"
	}
	conn, err := amqp.Dial(*amqpURL)
	if err != nil {
		r.note = "skipped: " + err.Error()
		return r
	}
	defer conn.Close()
	qname := fmt.Sprintf("ferry-peers-%s-%d", qtype, time.Now().UnixNano())
	setup, _ := conn.Channel()
	if _, err := setup.QueueDeclare(qname, true, false, false, false, amqp.Table{"x-queue-type": qtype}); err != nil {
		r.note = "skipped: " + err.Error()
		return r
	}
	defer setup.QueueDelete(qname, false, false, false)
	// One channel per publisher in confirm mode; each publisher keeps a
	// window of 256 unconfirmed publishes.
	var chans sync.Map
	var id atomic.Int64
	r.produce, err = parallel(func() error {
		g := id.Add(1) % int64(*producers)
		v, ok := chans.Load(g)
		if !ok {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			if err := ch.Confirm(false); err != nil {
				return err
			}
			v, _ = chans.LoadOrStore(g, &rabbitPub{ch: ch})
		}
		return v.(*rabbitPub).publish(qname, body)
	})
	chans.Range(func(_, v any) bool { v.(*rabbitPub).drain(); return true })
	if err != nil {
		r.note = err.Error()
		return r
	}
	ch, _ := conn.Channel()
	ch.Qos(1000, 0, false)
	deliveries, err := ch.Consume(qname, "", false, false, false, false, nil)
	if err != nil {
		r.note = err.Error()
		return r
	}
	start := time.Now()
	for i := 1; i <= *count; i++ {
		d := <-deliveries
		if i%100 == 0 || i == *count {
			d.Ack(true)
		}
	}
	r.consume = float64(*count) / time.Since(start).Seconds()
	return r
}

type rabbitPub struct {
	mu      sync.Mutex
	ch      *amqp.Channel
	pending []*amqp.DeferredConfirmation
}

func (p *rabbitPub) publish(q string, body []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q, false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
	if err != nil {
		return err
	}
	p.pending = append(p.pending, dc)
	if len(p.pending) >= 256 {
		p.pending[0].Wait()
		p.pending = p.pending[1:]
	}
	return nil
}

func (p *rabbitPub) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, dc := range p.pending {
		dc.Wait()
	}
	p.pending = nil
}

func measureNATS(body []byte) result {
	r := result{system: "NATS JetStream (file storage, acked publishes)"}
	bin, err := exec.LookPath(*natsBin)
	if err != nil {
		r.note = "skipped: nats-server not installed"
		return r
	}
	dir, _ := os.MkdirTemp("", "nats-peers")
	defer os.RemoveAll(dir)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", filepath.Join(dir, "js"))
	if err := srv.Start(); err != nil {
		r.note = "skipped: " + err.Error()
		return r
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var nc *nats.Conn
	for i := 0; i < 100; i++ {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		r.note = "skipped: " + err.Error()
		return r
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench"}, Storage: jetstream.FileStorage})
	if err != nil {
		r.note = err.Error()
		return r
	}
	// Async publishes with a window, acked by the server (stored).
	var wg sync.WaitGroup
	start := time.Now()
	per := *count / *producers
	for range *producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := js.PublishAsync("bench", body); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	<-js.PublishAsyncComplete()
	r.produce = float64(per**producers) / time.Since(start).Seconds()
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "peers", AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		r.note = err.Error()
		return r
	}
	start = time.Now()
	got := 0
	for got < per**producers {
		batch, err := cons.Fetch(1000)
		if err != nil {
			r.note = err.Error()
			return r
		}
		var last jetstream.Msg
		for m := range batch.Messages() {
			last = m
			got++
		}
		if last != nil {
			last.Ack()
		}
	}
	r.consume = float64(got) / time.Since(start).Seconds()
	return r
}
