package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/tcptest"
)

// readAll reads n bytes from c on a goroutine of its own.
func readAll(c net.Conn, n int) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(c, int64(n)))
		got <- b
	}()
	return got
}

// writeRest writes all[written:] on cc, blocking, and checks that sc reads
// all: the bytes a non-blocking write took, then the rest, in order; diff
// says how they differ otherwise.
func writeRest(t *testing.T, cc, sc net.Conn, all []byte, written int, diff string) {
	t.Helper()
	got := readAll(sc, len(all))
	if _, err := cc.Write(all[written:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, all) {
		t.Fatal(diff)
	}
}

// TestWritevResumes: Writev, over more segments than one writev takes and
// with empty ones among them, stops where the socket stops taking bytes
// and says where: the rest, written from there, completes the bytes of the
// segments in order.
func TestWritevResumes(t *testing.T) {
	raw, cc, sc := tcptest.RawPair(t)
	var segs [][]byte
	var all []byte
	for i := range 8 * maxIovecs {
		var s []byte
		if i%7 != 0 { // every seventh segment is empty
			s = bytes.Repeat([]byte{byte(i)}, 1+i*37%8000)
		}
		segs = append(segs, s)
		all = append(all, s...)
	}
	var w Writer
	i, off, err := w.Writev(raw, segs) // the peer does not read yet: the socket fills
	if err != nil {
		t.Fatal(err)
	}
	if i == len(segs) {
		t.Fatalf("the socket took all %d bytes without the peer reading", len(all))
	}
	if i > len(segs) || off >= len(segs[i]) {
		t.Fatalf("unwritten bytes start at segment %d byte %d, of %d segments", i, off, len(segs))
	}
	written := off
	for _, s := range segs[:i] {
		written += len(s)
	}
	writeRest(t, cc, sc, all, written, "the bytes read differ from the segments'")
}

// TestWriteNowStops: WriteNow returns once the socket takes no more, with
// how much it took; the rest, written from there, completes the bytes.
func TestWriteNowStops(t *testing.T) {
	raw, cc, sc := tcptest.RawPair(t)
	all := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // more than a socket buffers
	n, err := WriteNow(raw, all)
	if err != nil {
		t.Fatal(err)
	}
	if n == len(all) || n < 0 {
		t.Fatalf("WriteNow took %d of %d bytes without the peer reading", n, len(all))
	}
	writeRest(t, cc, sc, all, n, "the bytes read differ from those written")
}

// A write allocates nothing: every connection's every write goes through
// WriteNow or Writev.
func TestWritesDoNotAllocate(t *testing.T) {
	raw, _, sc := tcptest.RawPair(t)
	p := []byte("0123456789abcdef")
	const runs = 100
	got := readAll(sc, 2*(runs+1)*len(p))
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := WriteNow(raw, p); n != len(p) || err != nil {
			t.Fatalf("WriteNow = %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("WriteNow: %.1f allocations a write", a)
	}
	var w Writer
	segs := [][]byte{p[:5], p[5:]}
	if a := testing.AllocsPerRun(runs, func() {
		if i, _, err := w.Writev(raw, segs); i != len(segs) || err != nil {
			t.Fatalf("Writev = %d, %v", i, err)
		}
	}); a != 0 {
		t.Errorf("Writev: %.1f allocations a write", a)
	}
	if b := <-got; len(b) != 2*(runs+1)*len(p) {
		t.Fatalf("read %d bytes back", len(b))
	}
}

// Read waits for bytes to arrive, returns what is there, gives the
// connection's deadline error, and 0 bytes at the end of the stream.
func TestRead(t *testing.T) {
	raw, cc, sc := tcptest.RawPair(t)
	buf := make([]byte, 64)
	got := make(chan string, 1)
	go func() {
		n, err := Read(raw, buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	select { // with nothing sent, the read waits in the poller
	case s := <-got:
		t.Fatalf("read returned %q before anything was sent", s)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := sc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "hello" {
		t.Fatalf("read %q, want hello", s)
	}
	_ = cc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := Read(raw, buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past the deadline: %v", err)
	}
	_ = cc.SetReadDeadline(time.Time{})
	sc.Close()
	if n, err := Read(raw, buf); n != 0 || err != nil {
		t.Fatalf("at the end of the stream: %d bytes, %v; want 0, nil", n, err)
	}
	cc.Close()
	if _, err := Read(raw, buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("on a closed connection: %v", err)
	}
}
