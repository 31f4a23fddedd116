package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/client"
)

// benchStats collects latencies and prints a summary.
type benchStats struct {
	mu      sync.Mutex
	lats    []time.Duration
	n       atomic.Int64
	untimed atomic.Int64 // counted in n, but with no latency (a backlog's messages)
}

// received counts a message bench consume received, sent at born: timed
// when sent after the run began; a backlog's message, sent before, only
// counted, for its age is how long it waited for the run, not a latency.
func (s *benchStats) received(born, began time.Time) {
	if born.Before(began) {
		s.n.Add(1)
		s.untimed.Add(1)
		return
	}
	s.add(time.Since(born))
}

func (s *benchStats) add(d time.Duration) {
	s.n.Add(1)
	s.mu.Lock()
	s.lats = append(s.lats, d)
	s.mu.Unlock()
}

func (s *benchStats) report(w io.Writer, what string, elapsed time.Duration, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.lats)
	pct := func(p float64) time.Duration {
		if len(s.lats) == 0 {
			return 0
		}
		return s.lats[min(len(s.lats)-1, int(float64(len(s.lats))*p))]
	}
	n := s.n.Load()
	rate := float64(n) / elapsed.Seconds()
	fmt.Fprintf(w, "%s: %d messages in %v: %.0f msg/s, %.1f MB/s; ", what, n, elapsed.Round(time.Millisecond), rate, rate*float64(size)/1e6)
	switch untimed := s.untimed.Load(); {
	case untimed == 0:
		fmt.Fprintf(w, "latency p50 %v p99 %v max %v\n", pct(0.50), pct(0.99), pct(1))
	case len(s.lats) == 0:
		fmt.Fprintf(w, "no latency: all were sent before the run (produce while it runs, or use bench e2e)\n")
	default:
		fmt.Fprintf(w, "latency of the %d sent during the run p50 %v p99 %v max %v (%d sent before it not timed)\n",
			len(s.lats), pct(0.50), pct(0.99), pct(1), untimed)
	}
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load generator: throughput and latency percentiles"}
	var topic, group string
	var size, count, workers, batch int
	produce := &cobra.Command{
		Use: "produce", Short: "Send --count messages of --size bytes from --producers goroutines (sync sends, or batches)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			opts, err := clientOptions(cmd, cfg)
			if err != nil {
				return err
			}
			p, err := client.NewProducer(opts...)
			if err != nil {
				return err
			}
			defer p.Close()
			body := make([]byte, size)
			rand.Read(body)
			var st benchStats
			var sent atomic.Int64
			stopProgress := startProgress(ctx, cmd.ErrOrStderr(), "sent", &st.n, int64(count), time.Second)
			start := time.Now()
			var wg sync.WaitGroup
			var firstErr atomic.Value
			for range max(1, workers) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msgs := make([]*client.Message, max(1, batch))
					for i := range msgs {
						msgs[i] = &client.Message{Topic: topic, Body: body}
					}
					for ctx.Err() == nil {
						k := int64(len(msgs))
						if sent.Add(k) > int64(count) {
							return
						}
						t0 := time.Now()
						var err error
						if batch > 1 {
							_, err = p.SendBatch(ctx, msgs)
						} else {
							_, err = p.Send(ctx, msgs[0])
						}
						if err != nil {
							firstErr.CompareAndSwap(nil, err)
							return
						}
						d := time.Since(t0)
						for range k {
							st.add(d)
						}
					}
				}()
			}
			wg.Wait()
			stopProgress()
			st.report(cmd.OutOrStdout(), "produce", time.Since(start), size)
			if err, _ := firstErr.Load().(error); err != nil {
				return err
			}
			return nil
		},
	}
	pf := produce.Flags()
	pf.IntVar(&workers, "producers", 8, "concurrent senders")
	pf.IntVar(&batch, "batch", 1, "messages per send (1: single sends)")
	consume := &cobra.Command{
		Use: "consume", Short: "Receive --count messages with a new group from the first offset; latency is send-to-handled, of the messages sent during the run", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			if group == "" {
				group = fmt.Sprintf("bench-%d", time.Now().UnixNano())
			}
			opts, err := clientOptions(cmd, cfg, client.WithConsumeFrom(client.ConsumeFromFirst), client.WithPullBatch(256))
			if err != nil {
				return err
			}
			c, err := client.NewPushConsumer(group, opts...)
			if err != nil {
				return err
			}
			var st benchStats
			all, finish := context.WithCancel(ctx)
			var start time.Time
			var once sync.Once
			// Latency is from the send of a message sent during the run; the
			// backlog's messages are counted, not timed: their age is how long
			// they waited for this run, not how fast Ferry delivers.
			began := time.Now()
			err = c.Subscribe(topic, "*", func(_ context.Context, m *client.MessageExt) error {
				once.Do(func() { start = time.Now() })
				st.received(m.BornTime, began)
				if st.n.Load() >= int64(count) {
					finish()
				}
				return nil
			})
			if err != nil {
				return err
			}
			stopProgress := startProgress(all, cmd.ErrOrStderr(), "received", &st.n, int64(count), time.Second)
			if err := c.Start(ctx); err != nil {
				stopProgress()
				return err
			}
			<-all.Done()
			stopProgress()
			elapsed := time.Since(start)
			c.Close()
			st.report(cmd.OutOrStdout(), "consume", elapsed, size)
			return nil
		},
	}
	consume.Flags().StringVar(&group, "group", "", "consumer group (default: a new one)")
	var rate int
	e2e := &cobra.Command{
		Use: "e2e", Short: "Send --rate messages a second while a new group consumes them; latency is send-to-handled", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			opts, err := clientOptions(cmd, cfg)
			if err != nil {
				return err
			}
			// A topic of its own: nothing old to read, nothing sent before
			// the consumer is there.
			run := time.Now().UnixNano()
			topic := fmt.Sprintf("%s-e2e-%d", topic, run)
			a, err := client.NewAdmin(opts...)
			if err != nil {
				return err
			}
			err = a.CreateTopic(ctx, topic, 8)
			if err == nil {
				err = a.WaitForRoute(ctx, topic)
			}
			a.Close()
			if err != nil {
				return err
			}
			c, err := client.NewPushConsumer(fmt.Sprintf("bench-e2e-%d", run), append(opts, client.WithConsumeFrom(client.ConsumeFromFirst))...)
			if err != nil {
				return err
			}
			var st benchStats
			all, finish := context.WithCancel(ctx)
			defer finish()
			err = c.Subscribe(topic, "*", func(_ context.Context, m *client.MessageExt) error {
				st.add(time.Since(m.BornTime))
				if st.n.Load() >= int64(count) {
					finish()
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := c.Start(ctx); err != nil {
				return err
			}
			defer c.Close()
			p, err := client.NewProducer(opts...)
			if err != nil {
				return err
			}
			defer p.Close()
			body := make([]byte, size)
			rand.Read(body)
			stopProgress := startProgress(all, cmd.ErrOrStderr(), "received", &st.n, int64(count), time.Second)
			defer stopProgress()
			start := time.Now()
			interval := time.Second / time.Duration(max(1, rate))
			for i := 0; i < count && all.Err() == nil; i++ {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d) // pacing the load, not waiting for a condition
				}
				p.SendAsync(all, &client.Message{Topic: topic, Body: body}, func(_ client.SendResult, err error) {
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "send:", err)
					}
				})
			}
			select {
			case <-all.Done():
			case <-time.After(30 * time.Second):
				fmt.Fprintln(cmd.ErrOrStderr(), "gave up waiting for the last messages")
			}
			stopProgress()
			st.report(cmd.OutOrStdout(), fmt.Sprintf("e2e at %d msg/s", rate), time.Since(start), size)
			return nil
		},
	}
	e2e.Flags().IntVar(&rate, "rate", 10000, "messages sent per second")
	for _, c := range []*cobra.Command{produce, consume, e2e} {
		fs := c.Flags()
		addClientFlags(fs)
		fs.StringVar(&topic, "topic", "bench", "topic")
		fs.IntVar(&size, "size", 128, "body size in bytes")
		fs.IntVar(&count, "count", 100000, "messages")
		cmd.AddCommand(c)
	}
	return cmd
}
