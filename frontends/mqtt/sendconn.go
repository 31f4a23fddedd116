package mqtt

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/internal/rawio"
)

// sendConn is a client connection whose writes never wait for the client
// to read. A write goes to the socket at once, on the writing goroutine
// (the acker, a feed, the engine), when nothing written before it is still
// pending and the socket takes it without waiting; what the socket does not
// take is queued, in order, for a writer goroutine that runs only while the
// queue holds bytes. So an acknowledgement or a delivery costs no goroutine
// switch in the common case, and a client that does not read holds up
// nobody but its own writer.
//
// A connection without a file descriptor of its own (TLS, WebSocket) has
// every write go through the writer, since its framing cannot be written
// in part without waiting.
type sendConn struct {
	net.Conn
	raw syscall.RawConn // nil: every write is queued

	mu      sync.Mutex
	pending []byte        // bytes the writer is to write, in order
	spare   []byte        // the writer's last batch, for pending to reuse
	writing bool          // a writer goroutine is running
	closed  bool          // Close was called; the writer closes the socket when done
	err     error         // the first failed write: every later write fails with it
	room    chan struct{} // closed when pending drops to sendLowWater (roomCh)
}

const (
	// sendMaxPending is the most a connection queues for a client that
	// does not read (beyond what its socket buffer holds): a write past
	// it fails, and the connection is closed.
	sendMaxPending = 8 << 20
	// sendHighWater is the queue over which a feed waits before pulling
	// more (backlogged, roomCh), until it is down to sendLowWater.
	sendHighWater = 256 << 10
	sendLowWater  = 64 << 10
	// sendCloseGrace is how long Close lets the writer try to deliver what
	// is queued (a DISCONNECT with its reason) to a client that does not read.
	sendCloseGrace = time.Second
)

// errSlowReader is the error of a write to a client that has not read
// sendMaxPending bytes.
var errSlowReader = fmt.Errorf("mqtt: the client does not read: %d bytes are waiting to be sent (the most a connection queues)", sendMaxPending)

func newSendConn(c net.Conn) *sendConn {
	sc := &sendConn{Conn: c}
	if rawio.Supported {
		if s, ok := c.(syscall.Conn); ok {
			if raw, err := s.SyscallConn(); err == nil {
				sc.raw = raw
			}
		}
	}
	return sc
}

// Write writes p, or queues what the socket does not take at once; it
// never waits for the client.
func (c *sendConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	n := 0
	if !c.writing && c.raw != nil {
		var err error
		n, err = rawio.WriteNow(c.raw, p)
		if err != nil {
			c.err = err
			return n, err
		}
		if n == len(p) {
			return n, nil
		}
	}
	if len(c.pending)+len(p)-n > sendMaxPending && len(c.pending) > 0 {
		c.err = errSlowReader
		_ = c.Conn.Close() // the reader sees it, and the engine ends the client
		return n, c.err
	}
	c.pending = append(c.pending, p[n:]...)
	if !c.writing {
		c.writing = true
		go c.writeQueued()
	}
	return len(p), nil
}

// writeQueued writes the queue until it is empty, then ends, letting go of
// its buffers (an idle connection holds none).
func (c *sendConn) writeQueued() {
	for {
		c.mu.Lock()
		b := c.pending
		if len(b) == 0 || c.err != nil {
			c.pending, c.spare = nil, nil
			c.writing = false
			c.signalRoom()
			closed := c.closed
			c.mu.Unlock()
			if closed {
				_ = c.Conn.Close()
			}
			return
		}
		c.pending = c.spare[:0]
		c.mu.Unlock()

		_, err := c.Conn.Write(b)

		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		c.spare = b[:0]
		if len(c.pending) <= sendLowWater {
			c.signalRoom()
		}
		c.mu.Unlock()
	}
}

// signalRoom closes the channel roomCh handed out. Caller holds c.mu.
func (c *sendConn) signalRoom() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// backlogged says whether more than sendHighWater bytes are queued: a
// feed then stops pulling until roomCh's channel is closed, so that a
// subscriber that reads slowly slows its feed down rather than growing
// the queue.
func (c *sendConn) backlogged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backloggedLocked()
}

// backloggedLocked is backlogged for a caller that holds c.mu.
func (c *sendConn) backloggedLocked() bool {
	return len(c.pending) > sendHighWater && c.err == nil && c.writing
}

// roomCh returns a channel closed once the queue is down to sendLowWater
// or the connection fails; nil when it is not backlogged.
func (c *sendConn) roomCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.backloggedLocked() {
		return nil
	}
	if c.room == nil {
		c.room = make(chan struct{})
	}
	return c.room
}

// Read reads with a raw system call where the connection has a file
// descriptor of its own (rawio), and through the connection otherwise.
// Its errors are net.Conn's: EOF, or a *net.OpError.
func (c *sendConn) Read(p []byte) (int, error) {
	if c.raw == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	n, err := rawio.Read(c.raw, p)
	switch {
	case err != nil:
		return n, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Close closes the connection; when a writer is still sending, it is given
// sendCloseGrace to finish and closes the socket itself.
func (c *sendConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.writing && c.err == nil {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(sendCloseGrace))
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
