package mqtt

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/rawio"
	"github.com/ferrymq/ferry/internal/tcptest"
)

// tcpPair returns the two ends of a loopback TCP connection with small
// buffers, so that a few MiB unread fill them.
func tcpPair(t *testing.T) (server, client net.Conn) {
	c, s := tcptest.Pair(t)
	_ = s.SetWriteBuffer(32 << 10)
	_ = c.SetReadBuffer(32 << 10)
	return s, c
}

// A client that does not read holds up no writer, and once it reads it
// gets every byte, in order.
func TestSendConnNeverWaitsForTheClientAndKeepsOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
		raw  bool // the descriptor shows through wrap; without it every write is queued
	}{
		{"socket", func(c net.Conn) net.Conn { return c }, true},
		{"socket of a listener", func(c net.Conn) net.Conn { return &guardedConn{Conn: c, l: &guardedListener{}} }, true},
		{"no descriptor", func(c net.Conn) net.Conn { return struct{ net.Conn }{c} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := tcpPair(t)
			sc := newSendConn(tc.wrap(server))
			if (sc.raw != nil) != (tc.raw && rawio.Supported) { // no direct writes on some systems
				t.Fatalf("raw conn: %v", sc.raw != nil)
			}
			var want bytes.Buffer
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range 256 { // 4 MiB, far more than the socket buffers take
					chunk[0] = byte(i)
					want.Write(chunk)
					if _, err := sc.Write(chunk); err != nil {
						t.Errorf("write %d: %v", i, err)
						return
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("writes waited for a client that does not read")
			}
			sc.mu.Lock()
			queued := len(sc.pending) > 0 || sc.writing
			sc.mu.Unlock()
			if !queued {
				t.Fatal("nothing queued: the socket took 4 MiB unread")
			}
			got := make([]byte, want.Len())
			if _, err := io.ReadFull(client, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatal("the client read the bytes out of order")
			}
			if room := sc.roomCh(); room != nil {
				<-room
			}
			if sc.backlogged() {
				t.Fatal("backlogged once its room was signalled")
			}
			waitFor(t, "the writer to end and let go of its buffers once the queue emptied", func() bool {
				sc.mu.Lock()
				defer sc.mu.Unlock()
				return !sc.writing && sc.pending == nil && sc.spare == nil
			})
		})
	}
}

// Past sendMaxPending queued bytes a write fails and the connection closes.
func TestSendConnClosesOnAClientThatNeverReads(t *testing.T) {
	server, client := tcpPair(t)
	sc := newSendConn(server)
	chunk := make([]byte, 64<<10)
	var err error
	for i := 0; i < 2*sendMaxPending/len(chunk)+1024 && err == nil; i++ {
		_, err = sc.Write(chunk)
	}
	if !errors.Is(err, errSlowReader) {
		t.Fatalf("got %v, want errSlowReader", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, client); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}

// Close lets the writer deliver what is queued to a client that reads.
func TestSendConnCloseDeliversWhatIsQueued(t *testing.T) {
	server, client := tcpPair(t)
	sc := newSendConn(server)
	chunk := bytes.Repeat([]byte{7}, 1<<20)
	for range 4 {
		if _, err := sc.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write(chunk); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, client)
	if err != nil || n != 4<<20 {
		t.Fatalf("read %d bytes, %v; want %d and EOF", n, err, 4<<20)
	}
}
