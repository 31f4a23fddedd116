package poll

import (
	"net"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/tcptest"
)

func TestReadyOnInput(t *testing.T) {
	p, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	raw, cc, sc := tcptest.RawPair(t)
	got := make(chan string, 10)
	buf := make([]byte, 64)
	h, err := p.Add(raw, func() {
		_ = cc.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := cc.Read(buf)
		got <- string(buf[:n])
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "one" {
			t.Fatalf("read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ready was not called")
	}
	h.Remove()
}

func newPoller(t *testing.T, n int) *Poller {
	t.Helper()
	p, err := New(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// drain reads what c holds without waiting long.
func drain(c net.Conn) int {
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, _ := c.Read(buf)
	return n
}

// A paused socket is not reported, whatever comes; Resume reports it again.
func TestPauseResume(t *testing.T) {
	p := newPoller(t, 2)
	raw, cc, sc := tcptest.RawPair(t)
	calls := make(chan int, 10)
	var h *Handle
	pause := true
	h, err := p.Add(raw, func() {
		// With two runners, a socket may be reported to both before the
		// first has read it: the second finds nothing.
		again := pause // read before the test, woken by calls, changes it
		if n := drain(cc); n > 0 {
			calls <- n
		}
		if again {
			h.Pause()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sc.Write([]byte("a"))
	if n := <-calls; n != 1 {
		t.Fatalf("first call read %d bytes", n)
	}
	sc.Write([]byte("bc"))
	select {
	case <-calls:
		t.Fatal("ready was called while paused")
	case <-time.After(100 * time.Millisecond):
	}
	pause = false // ready is not running: the handle is paused
	h.Resume()
	if n := <-calls; n != 2 {
		t.Fatalf("after Resume, read %d bytes, want 2", n)
	}
	h.Remove()
	h.Resume() // after Remove: nothing
	sc.Write([]byte("d"))
	select {
	case <-calls:
		t.Fatal("ready was called after Remove")
	case <-time.After(100 * time.Millisecond):
	}
}

// Remove waits for a call of ready under way.
func TestRemoveWaitsForReady(t *testing.T) {
	p := newPoller(t, 1)
	raw, cc, sc := tcptest.RawPair(t)
	in, out := make(chan struct{}), make(chan struct{})
	h, err := p.Add(raw, func() {
		drain(cc)
		close(in)
		<-out
	})
	if err != nil {
		t.Fatal(err)
	}
	sc.Write([]byte("x"))
	<-in
	removed := make(chan struct{})
	go func() { h.Remove(); close(removed) }()
	select {
	case <-removed:
		t.Fatal("Remove returned while ready ran")
	case <-time.After(50 * time.Millisecond):
	}
	close(out)
	<-removed
}

// Every socket of many that has input is reported, and a socket whose
// ready waits holds up only itself: the other runner serves the rest.
func TestManySocketsOneStuck(t *testing.T) {
	p := newPoller(t, 2)
	const n = 200
	type pair struct{ cc, sc net.Conn }
	pairs := make([]pair, n)
	got := make(chan int, n)
	stuck := make(chan struct{})
	defer close(stuck)
	for i := range pairs {
		raw, cc, sc := tcptest.RawPair(t)
		pairs[i] = pair{cc, sc}
		if _, err := p.Add(raw, func() {
			if drain(cc) > 0 {
				got <- i
			}
			if i == 0 {
				<-stuck
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pr := range pairs {
		pr.sc.Write([]byte("m"))
	}
	seen := map[int]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < n {
		select {
		case i := <-got:
			seen[i] = true
		case <-timeout:
			t.Fatalf("%d of %d sockets reported", len(seen), n)
		}
	}
}

// After Close, ready is not called.
func TestClose(t *testing.T) {
	p, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	raw, cc, sc := tcptest.RawPair(t)
	calls := make(chan struct{}, 10)
	h, err := p.Add(raw, func() {
		if drain(cc) > 0 {
			calls <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	sc.Write([]byte("late"))
	select {
	case <-calls:
		t.Fatal("ready was called after Close")
	case <-time.After(100 * time.Millisecond):
	}
	h.Remove() // on a closed poller: nothing to undo
}
