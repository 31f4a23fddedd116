package remoting

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/rawio"
	"github.com/ferrymq/ferry/internal/tcptest"
)

// listenOnce listens on a loopback port; accept returns the first
// connection it accepts, closed when the test ends.
func listenOnce(t *testing.T) (addr string, accept func() net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	return ln.Addr().String(), func() net.Conn {
		t.Helper()
		c := <-accepted
		if c == nil {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// silentServer is a client connected to a server that reads nothing until
// the test reads from sc.
func silentServer(t *testing.T) (cl *Client, sc net.Conn) {
	t.Helper()
	addr, accept := listenOnce(t)
	cl, err := Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, accept()
}

// bigRequest is request i of a settle test: a 64 KiB body, which goes by
// reference, of the byte i.
func bigRequest(i int) (req *Command, body []byte) {
	body = bytes.Repeat([]byte{byte(i)}, 64<<10)
	req = NewRequest(int16(i%50), Pairs("i", strconv.Itoa(i)), body)
	req.Serialization = RocketMQ
	return req, body
}

// sameBytes fails the test with what, and where got first differs from
// want, unless they are equal.
func sameBytes(t *testing.T, got, want []byte, what string) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	n := 0
	for n < len(got) && n < len(want) && got[n] == want[n] {
		n++
	}
	t.Fatalf("%s: first difference at byte %d of %d", what, n, len(want))
}

// appendSent appends to want the frame of req as sent, with the body it
// held then (sent), whatever req.Body holds now.
func appendSent(t *testing.T, want []byte, req *Command, sent []byte) []byte {
	t.Helper()
	frame := *req
	frame.Body = sent
	want, err := AppendFrame(want, &frame)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// readN reads n bytes from c.
func readN(t *testing.T, c net.Conn, n int64) []byte {
	t.Helper()
	b, err := io.ReadAll(io.LimitReader(c, n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refCommands is requests with bodies on both sides of minRefBody, in
// both serializations, and the bytes their frames take.
func refCommands(n, big int) ([]*Command, []byte) {
	var cmds []*Command
	var want []byte
	for i := range n {
		size := 100
		if i%3 != 0 {
			size = big
		}
		c := NewRequest(int16(i%50), Pairs("i", strconv.Itoa(i), "topic", "t"), bytes.Repeat([]byte{byte(i)}, size))
		c.Opaque = int32(i)
		c.Serialization = RocketMQ
		if i%5 == 0 {
			c.Serialization = JSON
		}
		cmds = append(cmds, c)
		var err error
		if want, err = AppendFrame(want, c); err != nil {
			panic(err)
		}
	}
	return cmds, want
}

// TestSendRefFrames: frames whose bodies go by reference are the bytes
// AppendFrame makes, in order.
func TestSendRefFrames(t *testing.T) {
	cc, sc := tcptest.Pair(t)
	c := newWriterConn(cc)
	defer c.stopWriter()
	if !rawio.Supported {
		t.Skip("bodies are always copied on this system")
	}
	if !c.refs.on() {
		t.Fatal("a TCP connection's writer does not take bodies by reference")
	}
	cmds, want := refCommands(600, 4<<10)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(sc, int64(len(want))))
		got <- b
	}()
	var seqs []uint64
	for _, cmd := range cmds {
		seq, err := c.sendRef(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if (seq != 0) != (len(cmd.Body) >= minRefBody) {
			t.Fatalf("a body of %d bytes has frame number %d", len(cmd.Body), seq)
		}
		seqs = append(seqs, seq)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the frames written differ from AppendFrame's (%d bytes, want %d)", len(b), len(want))
	}
	for _, seq := range seqs {
		c.settle(seq) // all written: returns at once
	}
}

// TestSendRefSettle: with a peer that does not read, frames queued and
// frames the writer could not finish are settled without waiting for the
// peer; a body changed after its frame was settled does not change the
// bytes the peer reads later.
func TestSendRefSettle(t *testing.T) {
	cc, sc := tcptest.Pair(t)
	c := newWriterConn(cc)
	defer c.stopWriter()
	if !c.refs.on() {
		t.Skip("bodies are always copied on this system")
	}
	// Far more than the sockets' buffers hold: the writer stops part way.
	cmds, want := refCommands(400, 64<<10)
	// The first half goes to the writer as one batch: it writes what the
	// socket takes and copies the rest. The second half waits in the
	// queue meanwhile, and is copied there when settled.
	c.mu.Lock()
	c.writing = true // no kick: the frames wait for the one below
	c.mu.Unlock()
	var seqs []uint64
	for i, cmd := range cmds {
		seq, err := c.sendRef(cmd)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
		if i == len(cmds)/2 {
			c.kick <- struct{}{}
			c.mu.Lock()
			for c.refs.released.Load() == 0 { // the writer took the first half
				c.refs.settled.Wait()
			}
			c.mu.Unlock()
		}
	}
	for i, cmd := range cmds {
		c.settle(seqs[i])
		for j := range cmd.Body {
			cmd.Body[j] = 0xEE
		}
	}
	sameBytes(t, readN(t, sc, int64(len(want))), want, "the peer read other bytes than the frames held when sent")
}

// TestInvokeAsyncTimeoutSettles: calls to a server that does not read
// time out; their callbacks change the bodies, and the server, reading
// at last, still gets the bytes the bodies held when they were sent.
func TestInvokeAsyncTimeoutSettles(t *testing.T) {
	cl, sc := silentServer(t)
	const calls = 200 // 12.8 MiB: more than the sockets' buffers hold
	var want []byte
	done := make(chan struct{}, calls)
	for i := range calls {
		req, body := bigRequest(i)
		sent := bytes.Clone(body)
		err := cl.InvokeAsync(req, 100*time.Millisecond, func(_ *Command, err error) {
			if err == nil {
				t.Error("a call to a server that does not read was answered")
			}
			clear(body) // the caller's again
			done <- struct{}{}
		})
		if err != nil {
			t.Fatal(err)
		}
		want = appendSent(t, want, req, sent)
	}
	for range calls {
		<-done
	}
	sameBytes(t, readN(t, sc, int64(len(want))), want, "the server read other bytes than the requests held when sent")
}

// TestInvokeCancelSettles: calls to a server that does not read end with
// their contexts; each caller changes its body once Invoke returned, and
// the server, reading at last, still gets the bytes the bodies held when
// they were sent.
func TestInvokeCancelSettles(t *testing.T) {
	cl, sc := silentServer(t)
	const calls = 200 // 12.8 MiB: more than the sockets' buffers hold
	frames := make([][]byte, calls)
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			req, body := bigRequest(i)
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			_, err := cl.Invoke(ctx, req)
			frame := *req
			frame.Body = bytes.Clone(body)
			clear(body) // the caller's again
			if err == nil {
				err = errors.New("a call to a server that does not read was answered")
			} else if errors.Is(err, context.DeadlineExceeded) {
				frames[i], err = AppendFrame(nil, &frame)
			}
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, f := range frames {
		total += int64(len(f))
	}
	got := readN(t, sc, total)
	// The frames went out in the order the calls queued them: find each
	// by its opaque.
	byOpaque := map[int32][]byte{}
	for _, f := range frames {
		c, err := decodeFrame(f[4:], false)
		if err != nil {
			t.Fatal(err)
		}
		byOpaque[c.Opaque] = f
	}
	var want []byte
	for rest := got; len(rest) >= 4; {
		n := 4 + int(binary.BigEndian.Uint32(rest))
		if n > len(rest) {
			break
		}
		c, err := decodeFrame(rest[4:n], false)
		if err != nil {
			t.Fatalf("the server read a frame that does not decode: %v", err)
		}
		want = append(want, byOpaque[c.Opaque]...)
		rest = rest[n:]
	}
	sameBytes(t, got, want, "the server read other bytes than the requests held when sent")
}

// TestEarlyAnswerSettles: a server that answers calls before it reads
// them gets the bytes the bodies held when they were sent, though each
// callback changed its body.
func TestEarlyAnswerSettles(t *testing.T) {
	cl, sc := silentServer(t)
	const calls = 200 // 12.8 MiB: more than the sockets' buffers hold
	var want []byte
	done := make(chan error, calls)
	for i := range calls {
		req, body := bigRequest(i)
		sent := bytes.Clone(body)
		err := cl.InvokeAsync(req, time.Minute, func(_ *Command, err error) {
			clear(body) // the caller's again
			done <- err
		})
		if err != nil {
			t.Fatal(err)
		}
		want = appendSent(t, want, req, sent)
		// Answered at once, unread.
		resp := req.Response(Success, "")
		resp.Flag |= FlagResponse
		f, err := AppendFrame(nil, resp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	for range calls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	sameBytes(t, readN(t, sc, int64(len(want))), want, "the server read other bytes than the requests held when sent")
}
