package remoting

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// rawDial is a plain TCP connection to addr, closed with the test.
func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// closedByPeer waits until the peer closed nc (a read ends in EOF or a
// reset), failing after 10 s. It reads and drops what comes before.
func closedByPeer(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server did not close the connection within 10 s")
	}
}

// A connection that sends no whole frame in time is closed; one that
// sends its request at once is served.
func TestFirstRequestTimeout(t *testing.T) {
	s, addr := startServerS(t, HandlerFunc(echo), ServerOptions{Limits: Limits{FirstRequestTimeout: 100 * time.Millisecond}})
	silent := rawDial(t, addr)
	partial := rawDial(t, addr)
	frame, _ := AppendFrame(nil, NewRequest(HeartBeat, nil, []byte("half")))
	if _, err := partial.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, silent)
	closedByPeer(t, partial)
	waitFor(t, "two first-request timeouts counted", func() bool { return s.Stats().FirstRequestTimeouts == 2 })
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatalf("the connection that sent its request in time: %v", err)
	}
}

// A connection that sends nothing for the idle timeout is closed, unless
// one of its requests is still being served.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	s, addr := startServerS(t, HandlerFunc(func(ctx context.Context, c *Conn, req *Command) *Command {
		if req.Code == PullMessage {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return echo(ctx, c, req)
	}), ServerOptions{Limits: Limits{IdleTimeout: 200 * time.Millisecond}})
	busy := dial(t, addr)
	long := make(chan error, 1)
	go func() {
		_, err := busy.Invoke(context.Background(), NewRequest(PullMessage, nil, nil))
		long <- err
	}()
	waitFor(t, "the long request in progress", func() bool { return s.Stats().Open == 1 })
	idle := dial(t, addr)
	if _, err := idle.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
	// idle's last frame came after busy's: once idle is closed for it,
	// busy's idle deadline has passed too.
	waitFor(t, "the idle connection closed", func() bool { return idle.Err() != nil })
	if busy.Err() != nil {
		t.Fatalf("the connection with a request in progress was closed: %v", busy.Err())
	}
	close(release)
	if err := <-long; err != nil {
		t.Fatalf("the request in progress: %v", err)
	}
	waitFor(t, "the other connection closed once idle", func() bool { return busy.Err() != nil })
	if got := s.Stats().IdleTimeouts; got != 2 {
		t.Fatalf("IdleTimeouts = %d, want 2", got)
	}
}

// Frames that declare 16 MiB and send a little take memory for what came,
// not for what they declared.
func TestDeclaredHugeFrameAllocatesLittle(t *testing.T) {
	s, addr := startServerS(t, HandlerFunc(echo), ServerOptions{})
	req := NewRequest(SendMessageV2, Pairs("b", "topic"), make([]byte, 1000))
	frame, err := AppendFrame(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(frame, MaxFrame) // declares 16 MiB, sends ~1 KB of it
	const conns = 32
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range conns {
		if _, err := rawDial(t, addr).Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	arrived := int64(conns * (len(frame) - 4))
	waitFor(t, "the servers reading what arrived", func() bool { return s.Stats().ReadingBytes == arrived })
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	if allocated > 16<<20 {
		t.Fatalf("%d connections that each declared a 16 MiB frame and sent %d bytes allocated %d bytes", conns, len(frame), allocated)
	}
	t.Logf("%d frames declaring 16 MiB with %d bytes sent each: %d KiB allocated", conns, len(frame), allocated>>10)
	c := dial(t, addr)
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
}

// A client that pipelines requests and never reads the responses is
// disconnected once they pass the budget of queued bytes; other
// connections are served meanwhile.
func TestQueuedBytesBudget(t *testing.T) {
	body := make([]byte, 256<<10)
	s, addr := startServerS(t, HandlerFunc(func(ctx context.Context, c *Conn, req *Command) *Command {
		resp := req.Response(Success, "")
		if req.Code == PullMessage {
			resp.Body = body
		}
		return resp
	}), ServerOptions{Limits: Limits{MaxQueuedBytes: 1 << 20}})
	greedy := rawDial(t, addr)
	var frames []byte
	for i := range 400 { // 100 MiB of responses: more than the budget and the sockets' buffers
		req := NewRequest(PullMessage, nil, nil)
		req.Opaque = int32(i)
		frames, _ = AppendFrame(frames, req)
	}
	go greedy.Write(frames) // the server may close before it has read them all
	good := dial(t, addr)
	waitFor(t, "the reader that never reads disconnected", func() bool { return s.Stats().QueueOverflows == 1 })
	for range 10 {
		if _, err := good.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
			t.Fatalf("another connection: %v", err)
		}
	}
	waitFor(t, "only the good connection left", func() bool { return s.Stats().Open == 1 })
}

// Connections over MaxConns are closed as soon as they are accepted, and
// counted; once one closes, a new one is served.
func TestMaxConns(t *testing.T) {
	s, addr := startServerS(t, HandlerFunc(echo), ServerOptions{Limits: Limits{MaxConns: 2}})
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []*Client{a, b} {
		if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	over := rawDial(t, addr)
	closedByPeer(t, over)
	if st := s.Stats(); st.Refused != 1 || st.Open != 2 {
		t.Fatalf("refused %d, open %d; want 1 and 2", st.Refused, st.Open)
	}
	a.Close()
	waitFor(t, "the closed connection gone", func() bool { return s.Stats().Open == 1 })
	c := dial(t, addr)
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatalf("a connection under the limit again: %v", err)
	}
}

// FuzzFrameReader: the connection's frame reader, fed in pieces of any
// size, reads what ReadCommand reads, and fails where it fails; bodies it
// lends (lent.go) read the same until released, whatever it reads after.
func FuzzFrameReader(f *testing.F) {
	var stream []byte
	for i, body := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 70<<10), make([]byte, 300),
		bytes.Repeat([]byte("z"), 4096), bytes.Repeat([]byte("w"), 30<<10), bytes.Repeat([]byte("v"), 4096)} {
		c := NewRequest(int16(i), Pairs("k", fmt.Sprint(i)), body)
		if i%2 == 1 {
			c.Serialization = RocketMQ
		}
		stream, _ = AppendFrame(stream, c)
	}
	f.Add(stream, uint8(0))
	f.Add(stream, uint8(1))
	f.Add(stream[:len(stream)-10], uint8(2))
	f.Add([]byte{0, 0, 0, 2, 0, 0}, uint8(0))
	f.Add([]byte{0xff, 0, 0, 0, 1, 0, 0, 9}, uint8(1))
	f.Add(stream, uint8(3))
	f.Add(stream, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, how uint8) {
		const maxFrame = 1 << 20
		var src io.Reader = bytes.NewReader(data)
		switch how % 3 {
		case 1:
			src = iotest.OneByteReader(src)
		case 2:
			src = iotest.HalfReader(src)
		}
		fr := newFrameReader(src, true)
		defer fr.release()
		if how/3%2 == 1 { // lend the bodies of even codes; keep every other one unreleased
			fr.lends = func(c *Command) bool { return c.Code%2 == 0 }
		}
		type held struct{ got, want *Command }
		var kept []held
		defer func() {
			for _, h := range kept {
				if !bytes.Equal(h.got.Body, h.want.Body) {
					t.Fatalf("a lent body changed after later reads: %d bytes, want %d", len(h.got.Body), len(h.want.Body))
				}
				h.got.Release()
			}
		}()
		ref := bufio.NewReader(bytes.NewReader(data))
		for i := 0; ; i++ {
			want, werr := ReadCommand(ref, maxFrame)
			got, gerr := fr.readCommand(maxFrame)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("ReadCommand: %v; frame reader: %v", werr, gerr)
			}
			if werr != nil {
				if errors.Is(werr, io.EOF) != errors.Is(gerr, io.EOF) || errors.Is(werr, ErrFrameTooLarge) != errors.Is(gerr, ErrFrameTooLarge) {
					t.Fatalf("ReadCommand: %v; frame reader: %v", werr, gerr)
				}
				return
			}
			if want.String() != got.String() || !bytes.Equal(want.Body, got.Body) || !slices.Equal(want.Fields, got.Fields) {
				t.Fatalf("ReadCommand read %v; frame reader %v", want, got)
			}
			if got.lent != nil {
				if i%2 == 0 {
					kept = append(kept, held{got, want}) // checked when the reading is done
				} else {
					got.Release() // its memory may serve the reads to come
				}
			}
		}
	})
}

// A frame over the limit among frames a BatchHandler batches is answered
// too; it does not leave the connection reading from inside a frame.
func TestOversizedFrameInABatch(t *testing.T) {
	s, addr := startServerS(t, &batcher{}, ServerOptions{Limits: Limits{MaxFrame: 1024}, KeyPrefix: "native."})
	nc := rawDial(t, addr)
	var frames []byte
	for i := range 3 {
		body := []byte("ok")
		if i == 2 {
			body = make([]byte, 2048)
		}
		req := NewRequest(SendMessageV2, nil, body)
		req.Opaque = int32(i)
		frames, _ = AppendFrame(frames, req)
	}
	if _, err := nc.Write(frames); err != nil {
		t.Fatal(err)
	}
	// The requests before it may be answered or not: the connection
	// closes as they are served.
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	var answer *Command
	for {
		resp, err := ReadCommand(r, MaxFrame)
		if err != nil {
			break
		}
		if resp.Opaque == 2 {
			answer = resp
		}
	}
	if answer == nil || answer.Code != MessageIllegal || !strings.Contains(answer.Remark, "(native.max-frame)") {
		t.Fatalf("the oversized request: %v", answer)
	}
	if n := s.Stats().FramesTooLarge; n != 1 {
		t.Fatalf("FramesTooLarge = %d, want 1", n)
	}
}

// Large frames arriving on all connections hold at most MaxReadingBytes:
// past it, a connection whose large frame is still arriving is answered
// SYSTEM_BUSY and closed; the others are served.
func TestReadingBudget(t *testing.T) {
	s, addr := startServerS(t, HandlerFunc(echo), ServerOptions{Limits: Limits{MaxReadingBytes: 1 << 20}, KeyPrefix: "native."})
	frame, err := AppendFrame(nil, NewRequest(SendMessageV2, Pairs("b", "topic"), make([]byte, 600<<10)))
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(frame, MaxFrame) // declares 16 MiB, sends 600 KiB of it
	first := rawDial(t, addr)
	if _, err := first.Write(frame); err != nil {
		t.Fatal(err)
	}
	arrived := int64(len(frame) - 4)
	waitFor(t, "the first large frame read as far as it came", func() bool { return s.Stats().ReadingBytes == arrived })
	second := rawDial(t, addr)
	if _, err := second.Write(frame); err != nil {
		t.Fatal(err)
	}
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := ReadCommand(bufio.NewReader(second), MaxFrame)
	if err != nil || resp.Code != SystemBusy || !strings.Contains(resp.Remark, "more than 1048576 bytes of large frames (native.max-reading-bytes)") {
		t.Fatalf("the frame past the budget: %v, %v", resp, err)
	}
	closedByPeer(t, second)
	if st := s.Stats(); st.ReadingOverBudget != 1 || st.ReadingBytes != arrived {
		t.Fatalf("stats %+v: want one connection over the budget, the first frame still arriving", st)
	}
	c := dial(t, addr)
	if _, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
}
