// Command sdkcpu measures the Go SDK's own CPU per message against a
// running Ferry: four producers publish with SendAsync (a window of 1,024
// each), then one push consumer group reads everything from the first
// offset. CPU is this process's user and system time (getrusage) divided
// by the messages, so the broker's CPU does not count and a shared machine
// disturbs the figure less than a rate.
//
//	ferry serve --data-dir /tmp/sdkcpu-data &
//	cd bench/sdkcpu && go run . --namesrv 127.0.0.1:9876 --messages 300000 --size 128
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/client"
)

func main() {
	ns := flag.String("namesrv", "127.0.0.1:9876", "NameServer address")
	n := flag.Int64("messages", 300000, "messages to publish and consume")
	size := flag.Int("size", 128, "body size in bytes")
	topic := flag.String("topic", fmt.Sprint("sdkcpu-", time.Now().UnixNano()), "topic (created with 8 queues)")
	profile := flag.String("profile", "", "write CPU profiles to PREFIX-publish.prof and PREFIX-consume.prof")
	flag.Parse()
	if err := run(*ns, *topic, *n, *size, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "sdkcpu:", err)
		os.Exit(1)
	}
}

// cpu is this process's user and system CPU time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phase measures f: wall time and CPU time, with a CPU profile to path
// when path is set.
func phase(path string, f func() error) (wall, used time.Duration, err error) {
	if path != "" {
		out, err := os.Create(path)
		if err != nil {
			return 0, 0, err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	c0, t0 := cpu(), time.Now()
	err = f()
	return time.Since(t0), cpu() - c0, err
}

func run(ns, topic string, n int64, size int, profile string) error {
	ctx := context.Background()
	quiet := client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	admin, err := client.NewAdmin(client.WithNameServers(ns), quiet)
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := admin.CreateTopic(ctx, topic, 8); err != nil {
		return err
	}
	if err := admin.WaitForRoute(ctx, topic); err != nil {
		return err
	}
	body := make([]byte, size)
	prods := make([]*client.Producer, 4)
	for i := range prods {
		if prods[i], err = client.NewProducer(client.WithNameServers(ns), quiet); err != nil {
			return err
		}
		defer prods[i].Close()
		if _, err := prods[i].Send(ctx, &client.Message{Topic: topic, Body: body}); err != nil { // warm the route and connection
			return err
		}
	}
	total := n + int64(len(prods))
	profPath := func(what string) string {
		if profile == "" {
			return ""
		}
		return profile + "-" + what + ".prof"
	}

	var failed atomic.Pointer[error]
	wall, used, err := phase(profPath("publish"), func() error {
		var next atomic.Int64
		var wg sync.WaitGroup
		for _, p := range prods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				window := make(chan struct{}, 1024)
				m := &client.Message{Topic: topic, Body: body}
				for next.Add(1) <= n {
					window <- struct{}{}
					p.SendAsync(ctx, m, func(_ client.SendResult, err error) {
						<-window
						if err != nil {
							failed.CompareAndSwap(nil, &err)
						}
					})
				}
				for range cap(window) { // wait for the last answers
					window <- struct{}{}
				}
			}()
		}
		wg.Wait()
		if e := failed.Load(); e != nil {
			return *e
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	pubCPU := used
	fmt.Printf("publish: %d msgs, %.0f msg/s, client CPU %.2f µs/msg\n", n, float64(n)/wall.Seconds(), perMsg(used, n))

	wall, used, err = phase(profPath("consume"), func() error {
		var got atomic.Int64
		all := make(chan struct{})
		c, err := client.NewPushConsumer(fmt.Sprint("sdkcpu-", time.Now().UnixNano()), client.WithNameServers(ns), quiet,
			client.WithConsumeFrom(client.ConsumeFromFirst))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Subscribe(topic, "*", func(context.Context, *client.MessageExt) error {
			if got.Add(1) == total {
				close(all)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			return err
		}
		select {
		case <-all:
			return nil
		case <-time.After(2 * time.Minute):
			return errors.New("consume: " + fmt.Sprint(got.Load()) + " of " + fmt.Sprint(total) + " messages in 2 minutes")
		}
	})
	if err != nil {
		return err
	}
	fmt.Printf("consume: %d msgs, %.0f msg/s, client CPU %.2f µs/msg\n", total, float64(total)/wall.Seconds(), perMsg(used, total))
	fmt.Printf("client CPU per message published and consumed: %.2f µs\n", perMsg(pubCPU, n)+perMsg(used, total))
	return nil
}

func perMsg(d time.Duration, n int64) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
