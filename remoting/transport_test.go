package remoting

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func startServer(t testing.TB, h Handler, opts ServerOptions) string {
	t.Helper()
	_, addr := startServerS(t, h, opts)
	return addr
}

// startServerS is startServer that returns the server too.
func startServerS(t testing.TB, h Handler, opts ServerOptions) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := NewServer(h, opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return s, ln.Addr().String()
}

func echo(_ context.Context, _ *Conn, req *Command) *Command {
	resp := req.Response(Success, "")
	resp.Body = req.Body
	return resp
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestInvokeConcurrently(t *testing.T) {
	addr := startServer(t, HandlerFunc(echo), ServerOptions{})
	c := dial(t, addr)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(fmt.Sprint("req-", i))
			resp, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, body))
			if err != nil || string(resp.Body) != string(body) || !resp.IsResponse() {
				t.Errorf("invoke %d: %v %v", i, resp, err)
			}
		}()
	}
	wg.Wait()
}

// A slow request does not hold up the connection's other requests.
func TestSlowRequestDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	addr := startServer(t, HandlerFunc(func(ctx context.Context, c *Conn, req *Command) *Command {
		if req.Code == PullMessage {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return echo(ctx, c, req)
	}), ServerOptions{})
	c := dial(t, addr)
	slow := make(chan error, 1)
	go func() {
		_, err := c.Invoke(context.Background(), NewRequest(PullMessage, nil, nil))
		slow <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Invoke(ctx, NewRequest(HeartBeat, nil, nil)); err != nil {
		t.Fatalf("a fast request behind a slow one: %v", err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// An oversized frame closes that connection only; the request is answered
// first with an error naming the limit.
func TestOversizedFrameClosesOnlyItsConnection(t *testing.T) {
	closed := make(chan string, 1)
	opts := ServerOptions{Limits: Limits{MaxFrame: 1024}, KeyPrefix: "native.", OnClose: func(c *Conn) {
		select {
		case closed <- c.RemoteAddr(): // the first one
		default:
		}
	}}
	s, addr := startServerS(t, HandlerFunc(echo), opts)
	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	good := dial(t, addr)
	bad.Write([]byte{0, 0x10, 0, 0, 0, 0, 0, 2, '{', '}'}) // 1 MiB declared, a JSON header {}
	resp, err := ReadCommand(bufio.NewReader(bad), MaxFrame)
	if err != nil || resp.Code != MessageIllegal || !strings.Contains(resp.Remark, "over the limit of 1024 bytes (native.max-frame)") {
		t.Fatalf("answer to a frame over the limit: %v, %v", resp, err)
	}
	bad.Close()
	select {
	case who := <-closed:
		if who != bad.LocalAddr().String() {
			t.Fatalf("closed %s, want the bad client %s", who, bad.LocalAddr())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection with an oversized frame was not closed")
	}
	if _, err := good.Invoke(context.Background(), NewRequest(HeartBeat, nil, []byte("still here"))); err != nil {
		t.Fatalf("the other connection: %v", err)
	}
	for _, ser := range []Serialization{RocketMQ, JSON} {
		c := dial(t, addr)
		big := NewRequest(HeartBeat, nil, make([]byte, 2048))
		big.Serialization = ser
		resp, err := c.Invoke(context.Background(), big)
		if err != nil {
			t.Fatalf("invoke with an oversized frame: %v, want an error response", err)
		}
		want := fmt.Sprintf("frame of %d bytes is over the limit of 1024 bytes (native.max-frame)", 4+frameHeaderLen(t, big)+2048)
		if resp.Code != MessageIllegal || resp.Remark != want {
			t.Fatalf("response %v, want code %d with remark %q", resp, MessageIllegal, want)
		}
		waitFor(t, "the connection closed after the answer", func() bool { return c.Err() != nil })
		if !errors.Is(c.Err(), ErrConnClosed) {
			t.Fatalf("after the answer: %v", c.Err())
		}
	}
	if got := s.Stats().FramesTooLarge; got != 3 {
		t.Fatalf("FramesTooLarge = %d, want 3", got)
	}
}

// frameHeaderLen is the length of c's header as encoded.
func frameHeaderLen(t *testing.T, c *Command) int {
	t.Helper()
	h, err := newFrameHeader(c)
	if err != nil {
		t.Fatal(err)
	}
	return h.len
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInvokeDeadlineAndServerGone(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := NewServer(HandlerFunc(func(ctx context.Context, c *Conn, req *Command) *Command {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}), ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go s.Serve(ln)
	c := dial(t, ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ctx, NewRequest(HeartBeat, nil, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	pending := make(chan error, 1)
	go func() {
		_, err := c.Invoke(context.Background(), NewRequest(HeartBeat, nil, nil))
		pending <- err
	}()
	s.Close()
	select {
	case err := <-pending:
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("pending call when the server went: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a pending call outlived its connection")
	}
}

func TestInvokeAsync(t *testing.T) {
	block := make(chan struct{})
	addr := startServer(t, HandlerFunc(func(ctx context.Context, c *Conn, req *Command) *Command {
		if req.Code == PullMessage {
			select {
			case <-block:
			case <-ctx.Done():
			}
		}
		return echo(ctx, c, req)
	}), ServerOptions{})
	c := dial(t, addr)
	results := make(chan error, 100)
	for i := 0; i < 100; i++ {
		body := []byte(fmt.Sprint(i))
		err := c.InvokeAsync(NewRequest(HeartBeat, nil, body), 5*time.Second, func(resp *Command, err error) {
			if err == nil && string(resp.Body) != string(body) {
				err = fmt.Errorf("response %q for request %q", resp.Body, body)
			}
			results <- err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// A response that does not come in time: the callback gets a deadline error.
	c.InvokeAsync(NewRequest(PullMessage, nil, nil), 50*time.Millisecond, func(_ *Command, err error) { results <- err })
	if err := <-results; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	// The connection goes: pending callbacks get ErrConnClosed.
	c.InvokeAsync(NewRequest(PullMessage, nil, nil), time.Minute, func(_ *Command, err error) { results <- err })
	c.Close()
	if err := <-results; !errors.Is(err, ErrConnClosed) {
		t.Fatalf("connection closed: %v", err)
	}
	close(block)
}

// Many large frames in flight at once make the pending buffer grow past the
// size a connection keeps; every frame must still arrive intact.
func TestConcurrentLargeSends(t *testing.T) {
	addr := startServer(t, HandlerFunc(echo), ServerOptions{})
	c := dial(t, addr)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{byte(i)}, 64<<10)
			for j := 0; j < 20; j++ {
				resp, err := c.Invoke(context.Background(), NewRequest(HeartBeat, Pairs("i", fmt.Sprint(i)), body))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(resp.Body, body) {
					errs <- fmt.Errorf("caller %d got a corrupted body", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// batcher batches requests with code SendMessageV2 and echoes every request.
type batcher struct {
	mu      sync.Mutex
	batches []int // sizes of the batches served
}

func (b *batcher) Serve(ctx context.Context, c *Conn, req *Command) *Command {
	return echo(ctx, c, req)
}
func (b *batcher) Batches(req *Command) bool { return req.Code == SendMessageV2 }
func (b *batcher) ServeBatch(ctx context.Context, c *Conn, reqs []*Command) []*Command {
	b.mu.Lock()
	b.batches = append(b.batches, len(reqs))
	b.mu.Unlock()
	out := make([]*Command, len(reqs))
	for i, r := range reqs {
		out[i] = echo(ctx, c, r)
	}
	return out
}

// Requests that arrive together are served as batches, in order, each
// answered; other requests among them are served on their own.
func TestBatchHandler(t *testing.T) {
	b := &batcher{}
	addr := startServer(t, b, ServerOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var frames []byte
	const n = 600
	for i := range n {
		code := SendMessageV2
		if i%100 == 50 {
			code = HeartBeat // not batched: ends a batch
		}
		req := NewRequest(code, nil, []byte(fmt.Sprint(i)))
		req.Opaque = int32(i)
		if frames, err = AppendFrame(frames, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.Write(frames); err != nil { // all at once: they arrive together
		t.Fatal(err)
	}
	r := bufio.NewReader(nc)
	seen := map[int32]bool{}
	for range n {
		resp, err := ReadCommand(r, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != fmt.Sprint(resp.Opaque) || !resp.IsResponse() {
			t.Fatalf("response %d carries %q", resp.Opaque, resp.Body)
		}
		seen[resp.Opaque] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct responses, want %d", len(seen), n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	batched := 0
	for _, k := range b.batches {
		if k > maxBatch {
			t.Fatalf("a batch of %d, more than %d", k, maxBatch)
		}
		batched += k
	}
	if len(b.batches) == 0 || batched < n/2 {
		t.Fatalf("batches %v: requests that arrived together were not batched", b.batches)
	}
}
