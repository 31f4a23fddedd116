package remoting

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
)

// Handler serves requests. It is called on a goroutine of its own per
// request, so it may block (a long-polling pull). It returns the response,
// or nil for a one-way request. ctx ends when the connection closes.
type Handler interface {
	Serve(ctx context.Context, c *Conn, req *Command) *Command
}

// BatchHandler is a Handler that also serves runs of requests at once.
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

// ServerOptions bound what one connection may do.
type ServerOptions struct {
	MaxFrame    int // default MaxFrame
	MaxInFlight int // requests served at once per connection (default 1024); a long-polling pull holds one while it waits
	Logger      *slog.Logger
	// OnClose, when set, is called once per connection after it closed.
	OnClose func(*Conn)
}

// Server accepts connections and serves their requests.
type Server struct {
	h    Handler
	opts ServerOptions

	mu     sync.Mutex
	ln     net.Listener
	conns  map[*Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	// accepted counts the connections accepted.
	accepted int64
}

// ServerStats count a server's connections.
type ServerStats struct {
	Open     int   // connections open now
	Accepted int64 // connections accepted since the server started
}

// Stats returns the server's connection counts.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ServerStats{Open: len(s.conns), Accepted: s.accepted}
}

// NewServer makes a server for h.
func NewServer(h Handler, opts ServerOptions) *Server {
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = MaxFrame
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{h: h, opts: opts, conns: map[*Conn]struct{}{}}
}

// Serve accepts on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		c := newConn(nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
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
	bh, _ := s.h.(BatchHandler)
	defer func() {
		cancel()
		c.Close()
		close(work)
		workers.Wait()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if s.opts.OnClose != nil {
			s.opts.OnClose(c)
		}
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	// dispatch hands u to a worker. Requests are served by long-lived
	// workers, started as needed up to MaxInFlight: a goroutine per request
	// would grow its stack anew through the handler's calls every time.
	dispatch := func(u unit) {
		select {
		case work <- u:
			return
		default:
		}
		if busy < s.opts.MaxInFlight {
			busy++
			workers.Add(1)
			go s.worker(ctx, c, work, u, &workers)
			return
		}
		work <- u // every worker busy: wait for one
	}
	var next *Command // read ahead while gathering a batch, not yet dispatched
	for {
		req := next
		next = nil
		if req == nil {
			var err error
			if req, err = ReadCommand(r, s.opts.MaxFrame); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					s.opts.Logger.Warn("remoting: closing connection", "remote", c.RemoteAddr(), "reason", err)
				}
				return
			}
		}
		if req.IsResponse() {
			continue // no server-sent requests wait for answers yet
		}
		if bh == nil || !bh.Batches(req) || !frameBuffered(r) {
			dispatch(unit{one: req})
			continue
		}
		batch := []*Command{req}
		for len(batch) < maxBatch && frameBuffered(r) {
			more, err := ReadCommand(r, s.opts.MaxFrame)
			if err != nil {
				break // the next ReadCommand meets it again and closes
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
	}
}

// unit is what a worker serves: one request, or a batch for a BatchHandler.
type unit struct {
	one   *Command
	batch []*Command
}

// frameBuffered reports whether a whole frame waits in r, so that reading
// it does not block.
func frameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < 4 {
		return false
	}
	b, err := r.Peek(4)
	return err == nil && r.Buffered() >= 4+int(binary.BigEndian.Uint32(b))
}

// worker serves first, then whatever work brings, until the connection ends.
func (s *Server) worker(ctx context.Context, c *Conn, work <-chan unit, first unit, wg *sync.WaitGroup) {
	defer wg.Done()
	var resps []*Command
	for u, ok := first, true; ok; u, ok = <-work {
		resps = resps[:0]
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

	// kick, when set, wakes the connection's own writer goroutine: Send
	// only queues. A client's pipelined sends come one after the other from
	// one goroutine, so they would otherwise each make a write; queued,
	// they go out together while the writer is busy.
	kick chan struct{}
	quit chan struct{}
}

func newConn(nc net.Conn) *Conn { return &Conn{nc: nc} }

// newWriterConn is a Conn whose writes are made by a writer goroutine,
// until stopWriter.
func newWriterConn(nc net.Conn) *Conn {
	c := &Conn{nc: nc, kick: make(chan struct{}, 1), quit: make(chan struct{})}
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
		bufs := c.queue.take()
		c.mu.Unlock()
		var werr error
		c.iov, werr = writeChunks(c.nc, bufs, c.iov)
		c.mu.Lock()
		c.queue.giveBack(bufs)
		if werr != nil {
			c.err = werr
		}
	}
	c.writing = false
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.nc.RemoteAddr().String() }

// Send writes commands, in one write. Concurrent sends are combined: the one that is
// writing also writes the frames the others queued meanwhile, so a busy
// connection makes one write syscall for many frames. A send that joined
// another's write returns before that write is done; a failed write shows
// as the connection closing.
func (c *Conn) Send(cmds ...*Command) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	var err error
	for _, cmd := range cmds {
		if err = c.queue.add(cmd); err != nil {
			c.mu.Unlock()
			return err
		}
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
	err = c.err
	c.mu.Unlock()
	return err
}

// Close closes the connection.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.nc.Close() })
	return err
}
