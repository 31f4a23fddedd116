package remoting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/internal/lograte"
)

// Handler serves requests. It is called on a goroutine of its own per
// request, so it may block (a long-polling pull). It returns the response,
// or nil for a one-way request. ctx ends when the connection closes.
type Handler interface {
	Serve(ctx context.Context, c *Conn, req *Command) *Command
}

// BatchHandler is a Handler that also serves runs of requests at once.
// A request Batches accepts with a body of 1 KiB or more has its body lent
// from the connection's read buffer, alone or in a batch: the handler
// releases it (Command.Release) once it needs the body no more, and that
// memory serves later reads; one not released holds the whole buffer
// until it is collected.
// Consecutive requests that arrived together (whole in the connection's
// read buffer) and that Batches accepts are given to ServeBatch in order,
// on one worker; it returns their responses in the same order (nil for
// none), which are written at once. A connection's sends then share one
// pass through the store instead of competing for it on many goroutines.
type BatchHandler interface {
	Handler
	Batches(req *Command) bool
	ServeBatch(ctx context.Context, c *Conn, reqs []*Command) []*Command
}

// maxBatch bounds the requests of one batch.
const maxBatch = 256

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn, req *Command) *Command

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, c *Conn, req *Command) *Command {
	return f(ctx, c, req)
}

// Limits bound what clients can take from a server: docs/native.md,
// "Limits". A zero field takes its default.
type Limits struct {
	// MaxConns caps the connections open at once (default 10000): one
	// more is closed as soon as it is accepted.
	MaxConns int
	// MaxFrame caps a frame's length (default MaxFrame, 16 MiB). A larger
	// request is answered MESSAGE_ILLEGAL naming the limit, then its
	// connection closes.
	MaxFrame int
	// MaxInFlight caps the requests of one connection served at once
	// (default 1024); a long-polling pull holds one while it waits. Past
	// it the connection's next request is not read until one is done.
	MaxInFlight int
	// FirstRequestTimeout closes a connection that sent no whole frame
	// this long after it was accepted (default 10 s).
	FirstRequestTimeout time.Duration
	// IdleTimeout closes a connection that sent no frame for this long
	// with none of its requests in progress (default 120 s; RocketMQ's
	// clients and Ferry's SDK heartbeat every 30 s or less). A frame must
	// also arrive whole within it.
	IdleTimeout time.Duration
	// MaxQueuedBytes caps the bytes of responses waiting for one
	// connection's reader (default 64 MiB): a client that stops reading
	// is disconnected past it.
	MaxQueuedBytes int64
	// MaxReadingBytes caps the bytes of frames larger than a read buffer
	// (64 KiB) arriving at once over all connections (default 256 MiB):
	// past it, a connection whose large frame is still arriving is
	// answered SYSTEM_BUSY, which clients retry, and closed.
	MaxReadingBytes int64
}

// Default limits.
const (
	DefaultMaxConns            = 10000
	DefaultMaxInFlight         = 1024
	DefaultFirstRequestTimeout = 10 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultMaxQueuedBytes      = 64 << 20
	DefaultMaxReadingBytes     = 256 << 20
)

func (l Limits) withDefaults() Limits {
	l.MaxConns = orDefault(l.MaxConns, DefaultMaxConns)
	l.MaxFrame = orDefault(l.MaxFrame, MaxFrame)
	l.MaxInFlight = orDefault(l.MaxInFlight, DefaultMaxInFlight)
	l.FirstRequestTimeout = orDefault(l.FirstRequestTimeout, DefaultFirstRequestTimeout)
	l.IdleTimeout = orDefault(l.IdleTimeout, DefaultIdleTimeout)
	l.MaxQueuedBytes = orDefault(l.MaxQueuedBytes, DefaultMaxQueuedBytes)
	l.MaxReadingBytes = orDefault(l.MaxReadingBytes, DefaultMaxReadingBytes)
	return l
}

// orDefault is v, or def when v is not positive (unset).
func orDefault[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ServerOptions configure a server.
type ServerOptions struct {
	Limits
	// KeyPrefix names the limits' configuration keys in errors and logs:
	// "native." makes MaxFrame "native.max-frame".
	KeyPrefix string
	// ConnsKey names MaxConns's key when it is not KeyPrefix's
	// "max-connections".
	ConnsKey string
	Logger   *slog.Logger
	// OnClose, when set, is called once per connection after it closed.
	OnClose func(*Conn)
}

// Server accepts connections and serves their requests.
type Server struct {
	h    Handler
	opts ServerOptions

	mu        sync.Mutex
	ln        net.Listener
	conns     map[*Conn]struct{}
	closed    bool
	done      chan struct{} // closed by Close
	acceptErr error         // why accepting fails now; nil while it works
	wg        sync.WaitGroup
	// accepted counts the connections accepted.
	accepted int64

	refused, firstTimeouts, idleTimeouts, overflows, tooLarge, overBudget, acceptErrors atomic.Int64
	reading                                                                             atomic.Int64 // bytes of large frames being read

	logRefused, logOverflow, logTooLarge, logBudget, logAccept, logConn lograte.Limiter // one line each per logEvery
}

// ServerStats count a server's connections.
type ServerStats struct {
	Open     int   // connections open now
	Accepted int64 // connections accepted since the server started
	// Refused counts the connections closed at once, over MaxConns.
	Refused int64
	// FirstRequestTimeouts and IdleTimeouts count the connections closed
	// for sending no frame in time.
	FirstRequestTimeouts, IdleTimeouts int64
	// QueueOverflows counts the connections closed for leaving more than
	// MaxQueuedBytes of responses unread.
	QueueOverflows int64
	// FramesTooLarge counts the connections closed for a frame over MaxFrame.
	FramesTooLarge int64
	// ReadingOverBudget counts the connections closed while the large
	// frames arriving held more than MaxReadingBytes.
	ReadingOverBudget int64
	// AcceptErrors counts the failed accepts (retried).
	AcceptErrors int64
	// ReadingBytes is the bytes of frames larger than a read buffer (64
	// KiB) that are arriving now, over all connections.
	ReadingBytes int64
}

// LimitClose is a count of connections a limit closed, for metrics.
type LimitClose struct {
	Limit string // first_request_timeout, idle_timeout, max_queued_bytes, max_frame, max_reading_bytes
	N     int64
}

// LimitCloses lists the connections closed by each limit, refusals at
// accept (Refused) aside.
func (st ServerStats) LimitCloses() []LimitClose {
	return []LimitClose{
		{"first_request_timeout", st.FirstRequestTimeouts},
		{"idle_timeout", st.IdleTimeouts},
		{"max_queued_bytes", st.QueueOverflows},
		{"max_frame", st.FramesTooLarge},
		{"max_reading_bytes", st.ReadingOverBudget},
	}
}

// Stats returns the server's connection counts.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	st := ServerStats{Open: len(s.conns), Accepted: s.accepted}
	s.mu.Unlock()
	st.Refused = s.refused.Load()
	st.FirstRequestTimeouts = s.firstTimeouts.Load()
	st.IdleTimeouts = s.idleTimeouts.Load()
	st.QueueOverflows = s.overflows.Load()
	st.FramesTooLarge = s.tooLarge.Load()
	st.ReadingOverBudget = s.overBudget.Load()
	st.AcceptErrors = s.acceptErrors.Load()
	st.ReadingBytes = s.reading.Load()
	return st
}

// AcceptErr is why the server fails to accept connections now, nil while
// it accepts them (or before Serve, or after Close): a readiness check.
func (s *Server) AcceptErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.acceptErr
}

// NewServer makes a server for h.
func NewServer(h Handler, opts ServerOptions) *Server {
	opts.Limits = opts.Limits.withDefaults()
	if opts.ConnsKey == "" {
		opts.ConnsKey = opts.KeyPrefix + "max-connections"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{h: h, opts: opts, conns: map[*Conn]struct{}{}, done: make(chan struct{})}
	for _, l := range []*lograte.Limiter{&s.logRefused, &s.logOverflow, &s.logTooLarge, &s.logBudget, &s.logAccept, &s.logConn} {
		l.Every = logEvery
	}
	return s
}

// key names a limit's configuration key, e.g. key("max-frame").
func (s *Server) key(name string) string { return s.opts.KeyPrefix + name }

// Accept back-off: a failing accept is retried after acceptBackoffMin,
// doubling up to acceptBackoffMax, back to the minimum on a success.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// temporaryAcceptError reports whether a failed accept is worth retrying:
// out of file descriptors or memory, a connection aborted before it was
// accepted, a timeout. The listener stays up through them.
func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Serve accepts on ln until Close. It returns nil after Close. Failed
// accepts of a temporary kind (out of file descriptors, say) are retried
// with a back-off, and AcceptErr reports them meanwhile; any other error
// ends Serve, logged, and AcceptErr keeps it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	addr := ln.Addr().String()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			if !closed {
				s.acceptErr = fmt.Errorf("accepting connections on %s: %w", addr, err)
			}
			s.mu.Unlock()
			if closed {
				return nil
			}
			s.acceptErrors.Add(1)
			if !temporaryAcceptError(err) {
				s.opts.Logger.Error("remoting: the listener stopped accepting connections", "addr", addr, "err", err)
				return err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if ok, suppressed := s.logAccept.Allow(); ok {
				s.opts.Logger.Warn("remoting: accepting a connection failed; retrying", "addr", addr, "err", err,
					"retry_in", backoff, "suppressed", suppressed)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return nil
			}
			continue
		}
		if backoff != 0 {
			backoff = 0
			s.mu.Lock()
			s.acceptErr = nil
			s.mu.Unlock()
			s.opts.Logger.Info("remoting: accepting connections again", "addr", addr)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		if len(s.conns) >= s.opts.MaxConns {
			s.mu.Unlock()
			s.refused.Add(1) // before the close: whoever sees it closed sees it counted
			nc.Close()
			if ok, suppressed := s.logRefused.Allow(); ok {
				s.opts.Logger.Warn("remoting: connection refused: too many connections", "addr", addr, "remote", nc.RemoteAddr().String(),
					"limit", s.opts.MaxConns, "key", s.opts.ConnsKey, "suppressed", suppressed)
			}
			continue
		}
		c := newConn(nc)
		c.maxQueued = s.opts.MaxQueuedBytes
		s.conns[c] = struct{}{}
		s.accepted++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection and waits for their
// requests to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		close(s.done)
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// serveConn reads requests until the connection ends. A frame that cannot
// be read closes this connection, and only it.
func (s *Server) serveConn(c *Conn) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	work := make(chan unit) // to an idle worker
	busy := 0               // workers started; at most MaxInFlight
	var inFlight atomic.Int64
	bh, _ := s.h.(BatchHandler)
	fr := newFrameReader(c.nc, true)
	fr.reading, fr.maxReading = &s.reading, s.opts.MaxReadingBytes
	if bh != nil {
		fr.lends = bh.Batches // a BatchHandler releases the requests it batches: see BatchHandler
	}
	defer func() {
		cancel()
		c.Close()
		close(work)
		workers.Wait()
		fr.release()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if c.overflowed.Load() {
			s.overflows.Add(1)
			if ok, suppressed := s.logOverflow.Allow(); ok {
				s.opts.Logger.Warn("remoting: closed a connection that does not read its responses", "remote", c.RemoteAddr(),
					"limit", s.opts.MaxQueuedBytes, "key", s.key("max-queued-bytes"), "suppressed", suppressed)
			}
		}
		if s.opts.OnClose != nil {
			s.opts.OnClose(c)
		}
	}()
	// dispatch hands u to a worker. Requests are served by long-lived
	// workers, started as needed up to MaxInFlight: a goroutine per request
	// would grow its stack anew through the handler's calls every time.
	dispatch := func(u unit) {
		inFlight.Add(1)
		select {
		case work <- u:
			return
		default:
		}
		if busy < s.opts.MaxInFlight {
			busy++
			workers.Add(1)
			go s.worker(ctx, c, work, u, &workers, &inFlight)
			return
		}
		work <- u // every worker busy: wait for one
	}
	// The first frame must come within FirstRequestTimeout of the accept,
	// each later one within IdleTimeout of the one before. The deadline is
	// moved at most every deadlineStep (a syscall-free timer update, but
	// not one per frame).
	idle := s.opts.IdleTimeout
	deadlineStep := min(time.Second, idle/8)
	c.nc.SetReadDeadline(time.Now().Add(s.opts.FirstRequestTimeout))
	first := true
	var deadlineSet time.Time // when the idle deadline was last moved
	readNext := func() (*Command, error) {
		for {
			if !first && !fr.frameBuffered() {
				if now := time.Now(); now.Sub(deadlineSet) >= deadlineStep {
					c.nc.SetReadDeadline(now.Add(idle))
					deadlineSet = now
				}
			}
			req, err := fr.readCommand(s.opts.MaxFrame)
			if err != nil && !first && errors.Is(err, os.ErrDeadlineExceeded) && fr.buffered() == 0 && inFlight.Load() > 0 {
				// Idle between frames, but requests are in progress (long
				// polls, say): not idle yet.
				deadlineSet = time.Time{}
				continue
			}
			if err == nil && first {
				first = false
				deadlineSet = time.Time{} // now the idle deadline
			}
			return req, err
		}
	}
	var next *Command // read ahead while gathering a batch, not yet dispatched
	for {
		req := next
		next = nil
		if req == nil {
			var err error
			if req, err = readNext(); err != nil {
				s.readFailed(c, fr, err, first)
				return
			}
		}
		if req.IsResponse() {
			continue // no server-sent requests wait for answers yet
		}
		if bh == nil || !bh.Batches(req) || !fr.frameBuffered() {
			dispatch(unit{one: req})
			continue
		}
		batch := []*Command{req}
		var batchErr error // a frame in the buffer that does not decode, or is too large: it closes the connection after the batch
		for len(batch) < maxBatch && fr.frameBuffered() {
			more, err := fr.readCommand(s.opts.MaxFrame)
			if err != nil {
				batchErr = err
				break
			}
			if more.IsResponse() {
				continue
			}
			if !bh.Batches(more) {
				next = more
				break
			}
			batch = append(batch, more)
		}
		if len(batch) == 1 {
			dispatch(unit{one: req})
		} else {
			dispatch(unit{batch: batch})
		}
		if batchErr != nil {
			s.readFailed(c, fr, batchErr, false)
			return
		}
	}
}

// readFailed ends a connection whose next frame could not be read: it
// counts and logs why, and answers a frame too large before closing.
func (s *Server) readFailed(c *Conn, fr *frameReader, err error, first bool) {
	var tooLarge *FrameTooLargeError
	var overBudget *ReadBudgetError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
	case errors.Is(err, os.ErrDeadlineExceeded) && first:
		s.firstTimeouts.Add(1)
		s.opts.Logger.Debug("remoting: closing a connection that sent no request in time", "remote", c.RemoteAddr(),
			"timeout", s.opts.FirstRequestTimeout, "key", s.key("first-request-timeout"))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.idleTimeouts.Add(1)
		s.opts.Logger.Debug("remoting: closing an idle connection", "remote", c.RemoteAddr(),
			"timeout", s.opts.IdleTimeout, "key", s.key("idle-timeout"))
	case errors.As(err, &tooLarge):
		s.tooLarge.Add(1)
		remark := fmt.Sprintf("frame of %d bytes is over the limit of %d bytes (%s)", tooLarge.Len, tooLarge.Max, s.key("max-frame"))
		if ok, suppressed := s.logTooLarge.Allow(); ok {
			s.opts.Logger.Warn("remoting: closing a connection: "+remark, "remote", c.RemoteAddr(), "suppressed", suppressed)
		}
		// Answer the request, when its header can be read (it is small):
		// the client sees why, not a bare close.
		c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		req, herr := fr.header(tooLarge.Len)
		if herr != nil || req.IsResponse() || req.IsOneway() {
			return
		}
		c.sendAndClose(req.Response(MessageIllegal, remark), tooLarge.Len)
	case errors.As(err, &overBudget):
		s.overBudget.Add(1)
		remark := fmt.Sprintf("the server is reading more than %d bytes of large frames (%s); try again", overBudget.Max, s.key("max-reading-bytes"))
		if ok, suppressed := s.logBudget.Allow(); ok {
			s.opts.Logger.Warn("remoting: closing a connection: "+remark, "remote", c.RemoteAddr(), "suppressed", suppressed)
		}
		if req := overBudget.Req; req != nil && !req.IsResponse() && !req.IsOneway() {
			c.sendAndClose(req.Response(SystemBusy, remark), MaxFrame)
		}
	default:
		if ok, suppressed := s.logConn.Allow(); ok {
			s.opts.Logger.Warn("remoting: closing connection", "remote", c.RemoteAddr(), "reason", err, "suppressed", suppressed)
		}
	}
}

// unit is what a worker serves: one request, or a batch for a BatchHandler.
type unit struct {
	one   *Command
	batch []*Command
}

// worker serves first, then whatever work brings, until the connection ends.
func (s *Server) worker(ctx context.Context, c *Conn, work <-chan unit, first unit, wg *sync.WaitGroup, inFlight *atomic.Int64) {
	defer wg.Done()
	var resps []*Command
	for u, ok := first, true; ok; u, ok = <-work {
		resps = resps[:0]
		if ctx.Err() != nil { // the connection is gone: no one to answer
			inFlight.Add(-1)
			continue
		}
		if u.batch == nil {
			if resp := s.h.Serve(ctx, c, u.one); resp != nil && !u.one.IsOneway() {
				resp.Opaque, resp.Flag = u.one.Opaque, resp.Flag|FlagResponse
				resps = append(resps, resp)
			}
		} else {
			for i, resp := range s.h.(BatchHandler).ServeBatch(ctx, c, u.batch) {
				if req := u.batch[i]; resp != nil && !req.IsOneway() {
					resp.Opaque, resp.Flag = req.Opaque, resp.Flag|FlagResponse
					resps = append(resps, resp)
				}
			}
		}
		inFlight.Add(-1)
		if len(resps) == 0 {
			continue
		}
		if err := c.Send(resps...); err != nil && !errors.Is(err, net.ErrClosed) {
			s.opts.Logger.Debug("remoting: response not sent", "remote", c.RemoteAddr(), "err", err)
		}
	}
}

// Conn is one connection. Send is safe for concurrent use.
type Conn struct {
	nc        net.Conn
	mu        sync.Mutex  // guards the fields below
	queue     frameQueue  // frames waiting for the writer
	iov       net.Buffers // the writer's: only the one writing uses it
	writing   bool        // a Send (or the writer) is writing: it writes what others queue meanwhile
	err       error       // the connection's write failed
	closeOnce sync.Once
	// queued is the bytes of frames queued or being written; past
	// maxQueued (when set) the connection closes, and overflowed says so.
	queued, maxQueued int64
	overflowed        atomic.Bool
	drained           *sync.Cond // on mu: signalled when writing ends; made by sendAndClose

	// kick, when set, wakes the connection's own writer goroutine: Send
	// only queues. A client's pipelined sends come one after the other from
	// one goroutine, so they would otherwise each make a write; queued,
	// they go out together while the writer is busy.
	kick chan struct{}
	quit chan struct{}

	refs refWriter // frames whose bodies are queued by reference: connref.go
}

func newConn(nc net.Conn) *Conn { return &Conn{nc: nc} }

// newWriterConn is a Conn whose writes are made by a writer goroutine,
// until stopWriter.
func newWriterConn(nc net.Conn) *Conn {
	c := &Conn{nc: nc, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	c.refs.init(c)
	go c.writer()
	return c
}

func (c *Conn) stopWriter() { close(c.quit) }

func (c *Conn) writer() {
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			return
		}
		c.mu.Lock()
		c.writeLocked()
		c.mu.Unlock()
	}
}

// writeLocked writes what is pending, and what is queued meanwhile, then
// clears writing. Caller holds mu and has set writing.
func (c *Conn) writeLocked() {
	for !c.queue.empty() && c.err == nil {
		b := c.queue.take()
		seq := c.refs.take(b.refs)
		c.mu.Unlock()
		var werr error
		n := b.bytes()
		if b.refs {
			werr = c.writeRefs(b.segs, seq)
		} else {
			c.iov, werr = writeChunks(c.nc, b.segs, c.iov)
		}
		c.mu.Lock()
		c.queued -= n
		c.queue.giveBack(b)
		if werr != nil && c.err == nil {
			c.err = werr
		}
	}
	c.writing = false
	if c.drained != nil {
		c.drained.Broadcast()
	}
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.nc.RemoteAddr().String() }

// Send writes commands, in one write. Concurrent sends are combined: the one that is
// writing also writes the frames the others queued meanwhile, so a busy
// connection makes one write syscall for many frames. A send that joined
// another's write returns before that write is done; a failed write shows
// as the connection closing.
func (c *Conn) Send(cmds ...*Command) error {
	defer takeGivenBodies(cmds) // encoded (or dropped) by then
	// Frames larger than half a chunk are encoded before the lock, each
	// into memory of its own: copying megabytes under the lock would keep
	// the other senders waiting, each holding its response.
	var own [][]byte
	for _, cmd := range cmds {
		if len(cmd.Body) > chunkSize/2 {
			own = make([][]byte, 0, len(cmds))
			break
		}
	}
	for _, cmd := range cmds[:cap(own)] {
		h, err := newFrameHeader(cmd)
		if err != nil {
			return err
		}
		// The memory of a frame written before, when there is one
		// (giveBack returns it): no allocation and zeroing of megabytes.
		own = append(own, h.appendFrame(newFrame(h.frameLen(cmd)), cmd))
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if own != nil {
		for _, f := range own {
			c.queue.addFrame(f)
			c.queued += int64(len(f))
		}
	} else {
		for _, cmd := range cmds {
			n, err := c.queue.add(cmd)
			if err != nil {
				c.mu.Unlock()
				return err
			}
			c.queued += int64(n)
		}
	}
	return c.flushLocked()
}

// flushLocked has what was just queued written: it closes the connection
// past maxQueued, joins the write under way, wakes the writer goroutine,
// or writes. Caller holds mu; flushLocked releases it.
func (c *Conn) flushLocked() error {
	if c.maxQueued > 0 && c.queued > c.maxQueued {
		err := fmt.Errorf("%w: %d bytes of responses unread, over the limit of %d", ErrQueueFull, c.queued, c.maxQueued)
		c.err = err
		c.queue.drop()
		c.mu.Unlock()
		c.overflowed.Store(true)
		c.Close()
		return err
	}
	if c.writing {
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	if c.kick != nil {
		c.mu.Unlock()
		select {
		case c.kick <- struct{}{}:
		default:
		}
		return nil
	}
	c.mu.Unlock()
	runtime.Gosched() // frames on their way join this write
	c.mu.Lock()
	c.writeLocked()
	err := c.err
	c.mu.Unlock()
	return err
}

// ErrQueueFull: the peer left more bytes of responses unread than the
// connection may hold; it was closed.
var ErrQueueFull = errors.New("remoting: too many bytes queued for a peer that does not read")

// lingerTimeout bounds sendAndClose.
const lingerTimeout = 2 * time.Second

// sendAndClose writes cmd after what is queued, then closes the
// connection without losing cmd: it shuts down its sending side and reads
// (and drops) up to unread bytes the peer is still sending, for at most
// lingerTimeout, so that the close does not reset the connection before
// the peer has read cmd.
func (c *Conn) sendAndClose(cmd *Command, unread int64) {
	defer c.Close()
	deadline := time.Now().Add(lingerTimeout)
	c.nc.SetWriteDeadline(deadline)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if n, err := c.queue.add(cmd); err == nil {
		c.queued += int64(n)
	}
	if c.drained == nil {
		c.drained = sync.NewCond(&c.mu)
	}
	for c.writing {
		c.drained.Wait()
	}
	c.writing = true
	c.writeLocked()
	failed := c.err != nil
	c.mu.Unlock()
	if failed {
		return
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.nc.SetReadDeadline(deadline)
		io.Copy(io.Discard, io.LimitReader(c.nc, min(unread, 2*MaxFrame)))
	}
}

// Close closes the connection.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}
