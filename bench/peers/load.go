package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runResult is one system's figures in one round, for one body size.
type runResult struct {
	publish, consume float64 // msg/s
	published        int64
	p50, p99         time.Duration // end to end, at half the publish rate
	latRate          float64       // the paced rate
	latLost          int64
	cpuPerMsg        time.Duration // server CPU per message published
	clientPub        time.Duration // this load program's CPU per message published
	serverCons       time.Duration // server CPU per message consumed
	clientCons       time.Duration // this load program's CPU per message consumed
	sysPerMsg        float64       // server read+write syscalls per message published
	failover         time.Duration // kill -9 of the leader → first acknowledged write after it
	failoverWho      string        // which leader was killed
	failoverErr      error         // the failover measurement's error, if any
	err              error
}

// usage is a process's CPU time and read/write syscall counts.
type usage struct {
	cpu       time.Duration
	syscalls  int64
	available bool
}

// selfCPU is this process's CPU time (user and system), the clients'
// side of every system: the load program runs only the clients.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readUsage(pid int) usage {
	if pid == 0 {
		return usage{}
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return usage{}
	}
	// Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u := usage{cpu: time.Duration(ut+st) * 10 * time.Millisecond, available: true} // USER_HZ = 100
	if io, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io")); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "syscr: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				u.syscalls += n
			}
			if v, ok := strings.CutPrefix(line, "syscw: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				u.syscalls += n
			}
		}
	}
	return u
}

// measure runs the three phases against t: confirmed publishes for
// duration from --producers publishers, a consume of all of them, and
// end-to-end latency at half the publish rate.
func measure(t target, size int, duration time.Duration) runResult {
	var r runResult
	pids := pidsOf(t)
	before, self := sumUsage(pids), selfCPU()
	r.publish, r.published, r.err = publishPhase(t, size, duration)
	if r.published > 0 {
		r.clientPub = (selfCPU() - self) / time.Duration(r.published)
		if after := sumUsage(pids); after.available {
			r.cpuPerMsg = (after.cpu - before.cpu) / time.Duration(r.published)
			r.sysPerMsg = float64(after.syscalls-before.syscalls) / float64(r.published)
		}
	}
	if r.err != nil {
		return r
	}
	before, self = sumUsage(pids), selfCPU()
	if r.consume, r.err = consumePhase(t, r.published); r.err != nil {
		return r
	}
	r.clientCons = (selfCPU() - self) / time.Duration(r.published)
	if after := sumUsage(pids); after.available {
		r.serverCons = (after.cpu - before.cpu) / time.Duration(r.published)
	}
	r.latRate = r.publish / 2
	if *latRateF > 0 {
		r.latRate = *latRateF
	}
	r.p50, r.p99, r.latLost, r.err = latencyPhase(t, size, r.latRate, *latDur)
	if ft, ok := t.(failoverTarget); ok && r.err == nil && *failoverWarm > 0 {
		r.failover, r.failoverWho, r.failoverErr = measureFailover(ft, "fail", size, *failoverWarm)
	}
	return r
}

func publishPhase(t target, size int, duration time.Duration) (float64, int64, error) {
	pubs := make([]publisher, *producers)
	for i := range pubs {
		p, err := t.publisher("bench")
		if err != nil {
			for _, p := range pubs[:i] {
				p.close()
			}
			return 0, 0, fmt.Errorf("publisher: %w", err)
		}
		pubs[i] = p
	}
	body := make([]byte, size)
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	var lastAck atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return
		}
		acked.Add(1)
		lastAck.Store(time.Now().UnixNano())
	}
	start := time.Now()
	deadline := start.Add(duration)
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if i%64 == 0 && time.Now().After(deadline) {
					return
				}
				p.publish(body, done)
			}
		}()
	}
	wg.Wait()
	for _, p := range pubs {
		p.close() // waits for the confirms
	}
	elapsed := time.Duration(lastAck.Load() - start.UnixNano())
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, acked.Load(), fmt.Errorf("%d publishes failed: %w", failed.Load(), err)
	}
	return float64(acked.Load()) / elapsed.Seconds(), acked.Load(), nil
}

// consumePhase reads n messages from the start of "bench" with one consumer.
func consumePhase(t target, n int64) (float64, error) {
	var got atomic.Int64
	all := make(chan struct{})
	start := time.Now()
	stop, err := t.subscribe("bench", func([]byte) {
		if got.Add(1) == n {
			close(all)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("consumer: %w", err)
	}
	defer stop()
	select {
	case <-all:
		return float64(n) / time.Since(start).Seconds(), nil
	case <-time.After(120 * time.Second):
		return 0, fmt.Errorf("consumer: %d of %d messages in 120 s", got.Load(), n)
	}
}

// latencyPhase publishes at rate msg/s from one paced publisher for d,
// each body stamped with the time it was due (so a stalled publisher
// counts against the system), while one consumer measures now − stamp.
// The first 10 % of d is warm-up and not counted.
func latencyPhase(t target, size int, rate float64, d time.Duration) (p50, p99 time.Duration, lost int64, err error) {
	size = max(size, 8)
	total := int(rate * d.Seconds())
	lats := make([]time.Duration, total)
	var got atomic.Int64
	warm := time.Now().Add(d / 10).UnixNano() // refined below
	var warmAt atomic.Int64
	warmAt.Store(warm)
	stop, err := t.subscribe("lat", func(b []byte) {
		if len(b) < 8 {
			return
		}
		stamp := int64(binary.LittleEndian.Uint64(b))
		if stamp < warmAt.Load() {
			return
		}
		if i := got.Add(1) - 1; i < int64(len(lats)) {
			lats[i] = time.Duration(time.Now().UnixNano() - stamp)
		}
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("consumer: %w", err)
	}
	defer stop()
	p, err := t.publisher("lat")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("publisher: %w", err)
	}
	bodies := make([][]byte, 4096) // a ring: a body is reused after 4096 sends, long confirmed
	for i := range bodies {
		bodies[i] = make([]byte, size)
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	warmAt.Store(start.Add(d / 10).UnixNano())
	var counted int64
	var failed atomic.Int64
	for i := 0; i < total; {
		due := int(time.Since(start) / interval)
		for ; i < min(due+1, total); i++ {
			at := start.Add(time.Duration(i) * interval)
			b := bodies[i%len(bodies)]
			binary.LittleEndian.PutUint64(b, uint64(at.UnixNano()))
			if at.UnixNano() >= warmAt.Load() {
				counted++
			}
			p.publish(b, func(err error) {
				if err != nil {
					failed.Add(1)
				}
			})
		}
		time.Sleep(100 * time.Microsecond)
	}
	p.close()
	for wait := time.Now().Add(10 * time.Second); got.Load() < counted && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	n := min(got.Load(), int64(len(lats)))
	if n == 0 {
		return 0, 0, counted, fmt.Errorf("latency: nothing received")
	}
	l := slices.Clone(lats[:n])
	slices.Sort(l)
	return l[n/2], l[n*99/100], counted - got.Load() + failed.Load(), nil
}
