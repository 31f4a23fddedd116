package remoting

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrConnClosed: the connection closed before the response came.
var ErrConnClosed = errors.New("remoting: connection closed")

// Client is one connection to a server with requests matched to responses
// by opaque. Its methods are safe for concurrent use.
type Client struct {
	conn     *Conn
	maxFrame int
	opaque   atomic.Int32

	handler atomic.Pointer[RequestHandler] // HandleRequests'

	// ticks counts the sweeper's rounds: InvokeAsync's calls expire by
	// them, so that a call does not read the clock.
	ticks atomic.Uint64

	mu      sync.Mutex
	pending map[int32]chan *Command
	calls   map[int32]asyncCall // InvokeAsync's, by value: no allocation a call
	err     error               // set once the connection is gone
	done    chan struct{}
}

// Dial connects to addr.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return DialTLS(ctx, addr, nil)
}

// DialTLS is Dial over TLS with cfg (its ServerName defaults to addr's
// host); a nil cfg dials plain TCP.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Client, error) {
	var nc net.Conn
	var err error
	if cfg != nil {
		d := tls.Dialer{Config: cfg}
		nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("remoting: dial %s: %w", addr, err)
	}
	c := &Client{conn: newWriterConn(nc), maxFrame: MaxFrame, pending: map[int32]chan *Command{},
		calls: map[int32]asyncCall{}, done: make(chan struct{})}
	go c.readLoop()
	go c.sweep()
	return c, nil
}

// sweepEvery is how often InvokeAsync's calls are checked for their
// timeout: a call fails at most this much after it.
const sweepEvery = 50 * time.Millisecond

// sweep fails the async calls whose timeout passed, until the connection
// is gone. One sweeper per connection costs less than a timer per call.
func (c *Client) sweep() {
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	var late []asyncCall
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
			now := c.ticks.Add(1)
			c.mu.Lock()
			for op, call := range c.calls {
				if now >= call.expires {
					delete(c.calls, op)
					late = append(late, call)
				}
			}
			c.mu.Unlock()
			for i, call := range late {
				c.conn.settle(call.seq) // the caller may change the body from now on
				call.cb(nil, fmt.Errorf("remoting: no response within %v: %w", call.timeout, context.DeadlineExceeded))
				late[i] = asyncCall{}
			}
			late = late[:0]
		}
	}
}

func (c *Client) readLoop() {
	r := newFrameReader(c.conn.nc, false)
	var err error
	for {
		var cmd *Command
		if cmd, err = r.readCommand(c.maxFrame); err != nil {
			break
		}
		if !cmd.IsResponse() {
			c.serveRequest(cmd)
			continue
		}
		c.mu.Lock()
		var ch chan *Command
		call, isCall := c.calls[cmd.Opaque]
		if isCall {
			delete(c.calls, cmd.Opaque)
		} else if ch = c.pending[cmd.Opaque]; ch != nil {
			delete(c.pending, cmd.Opaque)
		}
		c.mu.Unlock()
		if ch != nil {
			ch <- cmd
		}
		if isCall {
			c.conn.settle(call.seq) // written already, unless the server answered early
			call.cb(cmd, nil)
		}
	}
	c.conn.Close()
	c.conn.stopWriter()
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", ErrConnClosed, err)
	for op, ch := range c.pending {
		close(ch)
		delete(c.pending, op)
	}
	calls := c.calls
	c.calls = map[int32]asyncCall{}
	gone := c.err
	c.mu.Unlock()
	for _, call := range calls {
		c.conn.settle(call.seq)
		call.cb(nil, gone)
	}
	close(c.done)
}

// RequestHandler serves a request the server sends on a client's
// connection (a broker's NOTIFY_CONSUMER_IDS_CHANGED, say). It runs on the
// connection's reader goroutine, one request at a time, so it must not
// block: it hands the work on. It returns the response to a two-way
// request, or nil.
type RequestHandler func(req *Command) *Command

// HandleRequests makes h serve the requests the server sends from now on.
// A two-way request that h does not answer (or that arrives without a
// handler) is answered REQUEST_CODE_NOT_SUPPORTED, as RocketMQ's clients
// answer the codes they do not know; one-way requests are dropped then.
// Requests from the server are bounded like responses: by the frame limit,
// one at a time, and an answer is dropped while more than a frame's worth
// of bytes waits to be written (a server that sends requests and does not
// read would otherwise fill the client's memory).
func (c *Client) HandleRequests(h RequestHandler) { c.handler.Store(&h) }

// serveRequest serves req, a request from the server.
func (c *Client) serveRequest(req *Command) {
	var resp *Command
	if h := c.handler.Load(); h != nil && *h != nil {
		resp = (*h)(req)
	}
	if req.IsOneway() {
		return
	}
	if resp == nil {
		resp = req.Response(RequestCodeNotSupported, fmt.Sprintf("request code %d not supported by this client", req.Code))
	}
	resp.Opaque, resp.Flag = req.Opaque, resp.Flag|FlagResponse
	c.conn.mu.Lock()
	backlog := c.conn.queued
	c.conn.mu.Unlock()
	if backlog > int64(c.maxFrame) {
		return
	}
	c.conn.Send(resp) // queued for the writer: never blocks
}

// Invoke sends req and waits for its response, until ctx ends. A response
// with an error code is returned as it is: see ResponseError.
func (c *Client) Invoke(ctx context.Context, req *Command) (*Command, error) {
	req.Opaque = c.opaque.Add(1)
	req.Flag &^= FlagResponse | FlagOneway
	ch := make(chan *Command, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.pending[req.Opaque] = ch
	c.mu.Unlock()
	seq, err := c.conn.sendRef(req)
	if err != nil {
		c.forget(req.Opaque)
		return nil, fmt.Errorf("remoting: send: %w", err)
	}
	// Whichever way the call ends, req's body is the caller's again only
	// once the connection no longer refers to it.
	defer c.conn.settle(seq)
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, c.Err()
		}
		return resp, nil
	case <-ctx.Done():
		c.forget(req.Opaque)
		return nil, ctx.Err()
	}
}

type asyncCall struct {
	cb      func(*Command, error)
	expires uint64 // the sweeper's round (Client.ticks) that fails the call
	timeout time.Duration
	seq     uint64 // the request's frame, settled before cb runs (Conn.sendRef)
}

// InvokeAsync sends req and calls cb once with its response, or with an
// error when the connection goes or timeout passes first (checked every
// 50 ms). cb runs on the connection's reader goroutine (or its sweeper's):
// it must not block. Many
// calls can be in flight on one connection, so their frames share writes.
// req's body may be written from where it lies: it must not change until
// cb is called.
func (c *Client) InvokeAsync(req *Command, timeout time.Duration, cb func(*Command, error)) error {
	req.Opaque = c.opaque.Add(1)
	req.Flag &^= FlagResponse | FlagOneway
	// The sweeper's next round may come at once: the call expires one
	// round later than its timeout, at most sweepEvery after it.
	rounds := max(0, (timeout+sweepEvery-1)/sweepEvery)
	call := asyncCall{cb: cb, expires: c.ticks.Load() + uint64(rounds) + 1, timeout: timeout}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	// Queued with the lock held, so that the call is known with its frame's
	// number before the response can come; the writer goroutine writes.
	seq, err := c.conn.sendRef(req)
	if err != nil {
		return fmt.Errorf("remoting: send: %w", err)
	}
	call.seq = seq
	c.calls[req.Opaque] = call
	return nil
}

// InvokeOneway sends req without waiting for an answer.
func (c *Client) InvokeOneway(req *Command) error {
	req.Opaque = c.opaque.Add(1)
	req.Flag = req.Flag&^FlagResponse | FlagOneway
	if err := c.Err(); err != nil {
		return err
	}
	return c.conn.Send(req)
}

func (c *Client) forget(op int32) {
	c.mu.Lock()
	delete(c.pending, op)
	c.mu.Unlock()
}

// Err is why the connection is gone, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; pending calls fail with ErrConnClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
