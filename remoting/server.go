package remoting

import (
	"bufio"
	"context"
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
	work := make(chan *Command) // to an idle worker
	busy := 0                   // workers started; at most MaxInFlight
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
	for {
		req, err := ReadCommand(r, s.opts.MaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.opts.Logger.Warn("remoting: closing connection", "remote", c.RemoteAddr(), "reason", err)
			}
			return
		}
		if req.IsResponse() {
			continue // no server-sent requests wait for answers yet
		}
		// Requests are served by long-lived workers, started as needed up
		// to MaxInFlight: a goroutine per request would grow its stack anew
		// through the handler's calls every time.
		select {
		case work <- req:
			continue
		default:
		}
		if busy < s.opts.MaxInFlight {
			busy++
			workers.Add(1)
			go s.worker(ctx, c, work, req, &workers)
			continue
		}
		work <- req // every worker busy: wait for one
	}
}

// worker serves first, then whatever work brings, until the connection ends.
func (s *Server) worker(ctx context.Context, c *Conn, work <-chan *Command, first *Command, wg *sync.WaitGroup) {
	defer wg.Done()
	for req := first; req != nil; req = <-work {
		resp := s.h.Serve(ctx, c, req)
		if resp == nil || req.IsOneway() {
			continue
		}
		resp.Opaque, resp.Flag = req.Opaque, resp.Flag|FlagResponse
		if err := c.Send(resp); err != nil && !errors.Is(err, net.ErrClosed) {
			s.opts.Logger.Debug("remoting: response not sent", "remote", c.RemoteAddr(), "err", err)
		}
	}
}

// Conn is one connection. Send is safe for concurrent use.
type Conn struct {
	nc        net.Conn
	mu        sync.Mutex // guards the fields below
	pending   []byte     // frames waiting for the writer
	spare     []byte
	writing   bool  // a Send is writing: it writes what others queue meanwhile
	err       error // the connection's write failed
	closeOnce sync.Once
}

func newConn(nc net.Conn) *Conn { return &Conn{nc: nc} }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.nc.RemoteAddr().String() }

// Send writes one command. Concurrent sends are combined: the one that is
// writing also writes the frames the others queued meanwhile, so a busy
// connection makes one write syscall for many frames. A send that joined
// another's write returns before that write is done; a failed write shows
// as the connection closing.
func (c *Conn) Send(cmd *Command) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	var err error
	if c.pending, err = AppendFrame(c.pending, cmd); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.writing {
		c.mu.Unlock()
		return nil
	}
	c.writing = true
	c.mu.Unlock()
	runtime.Gosched() // frames on their way join this write
	c.mu.Lock()
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, werr := c.nc.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if cap(buf) > 1<<20 {
			c.spare = nil // do not keep a large buffer; and never leave spare
			// pointing at the buffer pending now appends to
		}
		if werr != nil {
			c.err = werr
		}
	}
	c.writing = false
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
