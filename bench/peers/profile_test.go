package main

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/native/nativetest"
	"github.com/ferrymq/ferry/storage"
)

// profileSize is the body size BenchmarkNativePublish sends (go test -args -profile-size 4096).
var profileSize = flag.Int("profile-size", 128, "body bytes of BenchmarkNativePublish")

// profileFlush is the store's flush mode in BenchmarkNativePublish (go test -args -profile-flush sync).
var profileFlush = flag.String("profile-flush", "async", "flush mode of BenchmarkNativePublish's store: async or sync")

// BenchmarkNativePublish runs Ferry's native publish path in one process,
// for profiling (bench/peers.sh --profile DIR): the NameServer, the broker
// (store with async flush, or -profile-flush sync, core, native front-end) and the SDK, 4
// producers × 1024 pipelined sends of 128 bytes, and a consumer group of
// one that receives them all. One op is one message published, stored and
// delivered; allocations per op count the client's too.
func BenchmarkNativePublish(b *testing.B) {
	dir := b.TempDir()
	mode := storage.FlushAsync
	if *profileFlush == "sync" {
		mode = storage.FlushSync
	}
	st, err := storage.Open(dir, storage.Options{SegmentSize: 256 << 20, Logger: discard, RetentionAge: -1, RetentionDiskRatio: -1, FlushMode: mode})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	br, err := core.New(st, core.Config{AutoCreateTopics: true, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close() }) // after the front-end's, which Serve registers below
	nsAddr := nativetest.Serve(b, br, discard)
	br.CreateTopic("bench", 8)
	a, _ := client.NewAdmin(client.WithNameServers(nsAddr), client.WithLogger(discard))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := a.WaitForRoute(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	cancel()
	a.Close()

	var got atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	c, _ := client.NewPushConsumer("prof", client.WithNameServers(nsAddr), client.WithLogger(discard), client.WithPullBatch(256))
	c.Subscribe("bench", "*", func(context.Context, *client.MessageExt) error {
		if got.Add(1) == n {
			close(all)
		}
		return nil
	})
	const producers, inFlight = 4, 1024
	body := make([]byte, *profileSize)
	pubs := make([]*client.Producer, producers)
	for i := range pubs {
		p, err := client.NewProducer(client.WithNameServers(nsAddr), client.WithLogger(discard))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		pubs[i] = p
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := make(window, inFlight)
			m := &client.Message{Topic: "bench", Body: body}
			for next.Add(1) <= n {
				w.acquire()
				p.SendAsync(context.Background(), m, func(_ client.SendResult, err error) {
					w.release()
					if err != nil {
						b.Error(err)
					}
				})
			}
			w.wait()
		}()
	}
	wg.Wait()
	published := b.Elapsed()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d messages delivered", got.Load(), n)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/published.Seconds(), "published/s")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "delivered/s")
}
