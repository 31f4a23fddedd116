package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// background is --background connections that each publish one QoS 1
// message per --background-interval, spread evenly over it, to a topic of
// their own (background/i, outside the fleet subscriber's bench/#): the
// many slow devices a fleet's tail must not feel. Each publish waits for its
// PUBACK; the acknowledgement times are kept.
type background struct {
	ws   []*wire
	stop chan struct{}
	wg   sync.WaitGroup

	sent, failed atomic.Int64
	mu           sync.Mutex
	acks         []time.Duration
}

// startBackground opens n connections and starts their publishing.
func startBackground(addr string, n int, interval time.Duration, size int) (*background, error) {
	ws, err := idleConnections(addr, n)
	if err != nil {
		return nil, err
	}
	bg := &background{ws: ws, stop: make(chan struct{})}
	due := make(chan int, 1024)
	bg.wg.Add(1)
	go func() { // the clock: connection i is due at i/n of every interval
		defer bg.wg.Done()
		defer close(due)
		start := time.Now()
		for k := 0; ; k++ {
			at := start.Add(time.Duration(float64(interval) * float64(k) / float64(n)))
			select {
			case <-bg.stop:
				return
			case <-time.After(time.Until(at)):
			}
			select {
			case due <- k % n:
			case <-bg.stop:
				return
			}
		}
	}()
	payload := make([]byte, max(size, headerSize))
	for range 64 {
		bg.wg.Add(1)
		go func() {
			defer bg.wg.Done()
			for i := range due {
				bg.publish(ws[i], fmt.Sprintf("background/%d", i), payload)
			}
		}()
	}
	return bg, nil
}

// publish sends one QoS 1 message on w and waits for its PUBACK.
func (bg *background) publish(w *wire, topic string, payload []byte) {
	start := time.Now()
	w.writePublish(topic, 1, 1, payload)
	if err := w.w.Flush(); err != nil {
		bg.failed.Add(1)
		return
	}
	w.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer w.c.SetReadDeadline(time.Time{})
	for {
		typ, _, err := w.read()
		if err != nil {
			bg.failed.Add(1)
			return
		}
		if typ>>4 == pktPuback {
			break
		}
	}
	bg.sent.Add(1)
	bg.mu.Lock()
	bg.acks = append(bg.acks, time.Since(start))
	bg.mu.Unlock()
}

// close stops the publishing, closes the connections and describes what
// they did.
func (bg *background) close() string {
	close(bg.stop)
	bg.wg.Wait()
	closeAll(bg.ws)
	bg.mu.Lock()
	defer bg.mu.Unlock()
	s := fmt.Sprintf("%d background connections: %d publishes acknowledged, %d failed", len(bg.ws), bg.sent.Load(), bg.failed.Load())
	if len(bg.acks) > 0 {
		slices.Sort(bg.acks)
		s += fmt.Sprintf(", PUBACK p50 %s p99 %s", ms(bg.acks[len(bg.acks)/2]), ms(bg.acks[len(bg.acks)*99/100]))
	}
	return s
}
