package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The payload starts with the publisher's index, the message's sequence
// number and the time it was written, so that the subscriber can count lost
// and duplicate messages and measure publish → deliver latency.
const headerSize = 20

func stamp(p []byte, pub, seq int) {
	binary.BigEndian.PutUint32(p, uint32(pub))
	binary.BigEndian.PutUint64(p[4:], uint64(seq))
	binary.BigEndian.PutUint64(p[12:], uint64(time.Now().UnixNano()))
}

// tracker is what the subscriber saw.
type tracker struct {
	per     int
	seen    [][]bool
	unique  atomic.Int64
	total   atomic.Int64
	dups    int64
	other   int64
	lat     []time.Duration // publish → deliver, when recorded
	at      []int64         // when each of lat was delivered (Unix ns); nil: not kept
	keepLat bool
	last    time.Time
}

func newTracker(pubs, per int, keepLat bool) *tracker {
	t := &tracker{per: per, seen: make([][]bool, pubs), keepLat: keepLat}
	for i := range t.seen {
		t.seen[i] = make([]bool, per)
	}
	if keepLat {
		t.lat = make([]time.Duration, 0, pubs*per)
		if *timelines != "" {
			t.at = make([]int64, 0, pubs*per)
		}
	}
	return t
}

func (t *tracker) expected() int64 { return int64(len(t.seen) * t.per) }

func (t *tracker) record(p []byte, now time.Time) {
	t.total.Add(1)
	if len(p) < headerSize {
		t.other++
		return
	}
	pub := int(binary.BigEndian.Uint32(p))
	seq := int(binary.BigEndian.Uint64(p[4:]))
	if pub >= len(t.seen) || seq >= t.per {
		t.other++
		return
	}
	if t.seen[pub][seq] {
		t.dups++
		return
	}
	t.seen[pub][seq] = true
	t.last = now
	if t.keepLat {
		t.lat = append(t.lat, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(p[12:])))))
		if t.at != nil {
			t.at = append(t.at, now.UnixNano())
		}
	}
	t.unique.Add(1)
}

// subscribe connects a subscriber on filter at qos and records every
// message into t until the connection is closed; acks QoS 1 deliveries.
func subscribe(addr, filter string, qos byte, t *tracker) (*wire, <-chan error, error) {
	w, err := dialMQTT(addr, "bench-sub", 64<<10)
	if err != nil {
		return nil, nil, err
	}
	if err := w.subscribe(filter, qos); err != nil {
		w.c.Close()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() {
		for {
			first, b, err := w.read()
			if err != nil {
				w.w.Flush()
				done <- err
				return
			}
			if first>>4 != pktPublish {
				continue
			}
			q, id, payload, ok := parsePublish(first, b)
			if !ok {
				done <- errors.New("malformed PUBLISH")
				return
			}
			t.record(payload, time.Now())
			if q > 0 {
				w.writePuback(id)
			}
			if w.r.Buffered() == 0 {
				if err := w.w.Flush(); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	return w, done, nil
}

// publisher sends n messages of size bytes to topic at qos, with at most
// window QoS 1 publishes unacknowledged; interval > 0 paces them.
type publisher struct {
	w        *wire
	pub      int
	topic    string
	qos      byte
	window   int
	size     int
	n        int
	interval time.Duration
}

// run publishes and returns when every QoS 1 publish is acknowledged (QoS 0:
// when every message is written).
func (p *publisher) run(start time.Time) error {
	w := p.w
	payload := make([]byte, p.size)
	free := make(chan uint16, p.window)
	for i := 1; i <= p.window; i++ {
		free <- uint16(i)
	}
	readErr := make(chan error, 1)
	if p.qos > 0 {
		go func() {
			acked := 0
			for acked < p.n {
				first, b, err := w.read()
				if err != nil {
					readErr <- err
					return
				}
				if first>>4 == pktPuback && len(b) >= 2 {
					acked++
					free <- binary.BigEndian.Uint16(b)
				}
			}
			readErr <- nil
		}()
	}
	for seq := range p.n {
		if p.interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(seq) * p.interval)))
		}
		var id uint16
		if p.qos > 0 {
			select {
			case id = <-free:
			default:
				if err := w.w.Flush(); err != nil {
					return err
				}
				select {
				case id = <-free:
				case err := <-readErr:
					return fmt.Errorf("publisher %d: %v after %d publishes", p.pub, err, seq)
				}
			}
		}
		stamp(payload, p.pub, seq)
		w.writePublish(p.topic, p.qos, id, payload)
		if p.interval > 0 {
			if err := w.w.Flush(); err != nil {
				return err
			}
		}
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	if p.qos > 0 {
		select {
		case err := <-readErr:
			return err
		case <-time.After(60 * time.Second):
			return fmt.Errorf("publisher %d: acknowledgements missing after 60 s", p.pub)
		}
	}
	return nil
}

// loadResult is one load's figures.
type loadResult struct {
	delivered, published float64 // msg/s: unique at the subscriber; acknowledged (QoS 1) or written (QoS 0)
	lost, dups           int64
	p50, p99, max        time.Duration
	cpuPerMsg            time.Duration // the broker's CPU time (user and system) per message
	counts               perMsg        // the broker's system calls and thread switches per message; fleets only
	over1ms, over2ms     float64       // the share of messages slower than 1 and 2 ms; fleets only
	timeline             []delivered   // every message in the order delivered; fleets with --fleet-timelines only
	err                  error
}

// delivered is one message of a fleet as the subscriber saw it.
type delivered struct {
	at  int64         // Unix ns
	lat time.Duration // publish → deliver
}

// overFraction is the share of sorted latencies over d.
func overFraction(sorted []time.Duration, d time.Duration) float64 {
	i, _ := slices.BinarySearch(sorted, d+1)
	return float64(len(sorted)-i) / float64(len(sorted))
}

// writeTimeline writes a fleet round's messages, one line each: the time
// it was delivered (Unix ns) and its publish → deliver latency (ns). The
// tail's episodes show in it: when they come, how long they last, whether
// they recur with a period of the broker's (a flush interval, a collection).
func writeTimeline(path string, tl []delivered) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, d := range tl {
		fmt.Fprintf(w, "%d %d\n", d.at, d.lat.Nanoseconds())
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runLoad connects one subscriber on "#" and pubs publishers (publisher i on
// topic "bench/i"), each sending per messages, and waits until the
// subscriber has them all or nothing arrives for idle.
func runLoad(addr string, pubs, per int, qos byte, window, size int, interval time.Duration, keepLat bool, idle time.Duration) loadResult {
	var r loadResult
	t := newTracker(pubs, per, keepLat)
	sub, subDone, err := subscribe(addr, "bench/#", qos, t)
	if err != nil {
		r.err = fmt.Errorf("subscriber: %w", err)
		return r
	}
	defer sub.c.Close()

	ps := make([]*publisher, pubs)
	var dialErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range ps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w, err := dialMQTT(addr, fmt.Sprintf("bench-pub-%d", i), 64<<10)
			if err != nil {
				dialErr.CompareAndSwap(nil, err)
				return
			}
			ps[i] = &publisher{w: w, pub: i, topic: fmt.Sprintf("bench/%d", i), qos: qos, window: window, size: size, n: per}
			if interval > 0 {
				ps[i].interval = interval
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, p := range ps {
			if p != nil {
				p.w.close()
			}
		}
	}()
	if err, _ := dialErr.Load().(error); err != nil {
		r.err = fmt.Errorf("publisher: %w", err)
		return r
	}

	start := time.Now()
	var pubErr atomic.Value
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A paced fleet starts spread over one interval, as devices do.
			at := start
			if interval > 0 {
				at = start.Add(interval * time.Duration(i) / time.Duration(pubs))
			}
			if err := p.run(at); err != nil {
				pubErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	pubElapsed := time.Since(start)
	if err, _ := pubErr.Load().(error); err != nil {
		r.err = err
	}

	// Wait for the subscriber to have everything, or for it to stall.
	lastCount, lastChange := t.unique.Load(), time.Now()
	for t.unique.Load() < t.expected() {
		time.Sleep(20 * time.Millisecond)
		if c := t.unique.Load(); c != lastCount {
			lastCount, lastChange = c, time.Now()
		} else if time.Since(lastChange) > idle {
			break
		}
		select {
		case err := <-subDone:
			if r.err == nil {
				r.err = fmt.Errorf("subscriber: %w", err)
			}
		default:
			continue
		}
		break
	}
	sub.c.Close()
	<-subDone // the subscriber's goroutine has stopped writing to t
	got := t.unique.Load()
	r.published = float64(pubs*per) / pubElapsed.Seconds()
	if got > 0 {
		r.delivered = float64(got) / t.last.Sub(start).Seconds()
	}
	r.lost = t.expected() - got
	r.dups = t.dups + t.other
	if t.at != nil {
		r.timeline = make([]delivered, len(t.lat))
		for i, l := range t.lat {
			r.timeline[i] = delivered{at: t.at[i], lat: l}
		}
	}
	if len(t.lat) > 0 {
		slices.Sort(t.lat)
		r.over1ms = overFraction(t.lat, time.Millisecond)
		r.over2ms = overFraction(t.lat, 2*time.Millisecond)
		r.p50 = t.lat[len(t.lat)/2]
		r.p99 = t.lat[len(t.lat)*99/100]
		r.max = t.lat[len(t.lat)-1]
	}
	return r
}

// idleConnections opens n MQTT connections that then do nothing, and returns
// them; the caller closes them.
func idleConnections(addr string, n int) ([]*wire, error) {
	ws := make([]*wire, n)
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				w, err := dialMQTT(addr, fmt.Sprintf("idle-%d", i), 1<<10) // small: many, and they say little
				if err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
				ws[i] = w
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		closeAll(ws)
		return nil, err
	}
	return ws, nil
}

func closeAll(ws []*wire) {
	for _, w := range ws {
		if w != nil {
			w.close()
		}
	}
}
