package core

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// BenchmarkPublishToGroup publishes 128-byte messages (batches of 64, async
// flush) to a topic of 8 queues consumed by a clustering group of 4 push
// members; a message counts when its handler has run and it is acked.
//
//	go test -run '^$' -bench PublishToGroup -benchtime 2000000x ./core/
func BenchmarkPublishToGroup(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := storage.Open(b.TempDir(), storage.Options{SegmentSize: 256 << 20, Logger: logger, RetentionAge: -1, RetentionDiskRatio: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	br, err := New(st, Config{Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	br.CreateTopic("bench", 8)
	var handled atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		m, err := br.Join("g", fmt.Sprint("m", i), MemberOptions{Subscriptions: []GroupSub{{Topic: "bench"}}})
		if err != nil {
			b.Fatal(err)
		}
		go m.Consume(ctx, func(context.Context, *Delivery) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		}, PushOptions{Concurrency: 1, Window: 1024, Batch: 64})
	}
	batch := make([]*Message, 64)
	for i := range batch {
		batch[i] = &Message{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, 128)}
	}
	b.SetBytes(128)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n += len(batch) {
		k := min(len(batch), b.N-n)
		if _, err := br.PublishBatch(context.Background(), batch[:k], PublishOptions{Queue: QueueAuto}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishRouting is a publish among 100,000 live subscriptions of
// which 10 match: the cost of routing beside the store's append.
func BenchmarkPublishRouting(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := storage.Open(b.TempDir(), storage.Options{SegmentSize: 256 << 20, Logger: logger, RetentionAge: -1, RetentionDiskRatio: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	br, err := New(st, Config{Logger: logger, AutoCreateTopics: true})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	var matched atomic.Int64
	count := func(*Message) { matched.Add(1) }
	for i := 0; i < 100_000; i++ {
		f, _ := route.ParseFilter(fmt.Sprintf("dev/%d/telemetry", i+100))
		br.Subscribe("devices", f, count)
	}
	for _, expr := range []string{"dev/42/telemetry", "dev/+/telemetry", "dev/42/#", "+/42/telemetry", "#", "dev/#", "+/+/telemetry", "dev/42/telemetry || x", "dev/+/+", "+/+/+"} {
		f, _ := route.ParseFilter(expr)
		br.Subscribe("devices", f, count)
	}
	m := &Message{Topic: "devices", Subject: "dev/42/telemetry", Body: make([]byte, 128)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := br.Publish(context.Background(), m, PublishOptions{Queue: QueueAuto}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := matched.Load(); got != int64(10*b.N) {
		b.Fatalf("%d deliveries, want %d", got, 10*b.N)
	}
}
