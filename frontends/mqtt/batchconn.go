package mqtt

import (
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
)

// batchConn gathers the small writes made while the connection's reader is
// busy (PUBACKs, PUBRECs, SUBACKs: written by the engine one packet and one
// write at a time) and sends them in one write just before the reader
// blocks for more input. A write made while the reader is blocked goes out
// at once, since nobody else would flush it. Feeds write their batches and
// Flush. Underneath, the connection's sendConn sees that none of these
// writes waits for the client.
type batchConn struct {
	net.Conn
	send    *sendConn // the connection under the size checks
	mu      sync.Mutex
	buf     []byte
	reading bool // the reader is blocked in Read
}

// batchLimit is how much is gathered before a write goes out anyway.
const batchLimit = 64 << 10

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading || len(c.buf)+len(p) > batchLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *batchConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.reading = err == nil
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

// Flush writes what is gathered.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > batchLimit {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// Close sends what is gathered (a DISCONNECT with its reason, say) and
// closes; the sendConn underneath gives a client that does not read a
// moment to take it.
func (c *batchConn) Close() error {
	c.mu.Lock()
	_ = c.flushLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// sendConnOf returns the sendConn under cl's connection, or nil for a
// client without one (the engine's inline client, a test's pipe).
func sendConnOf(cl *mochi.Client) *sendConn {
	if bc, ok := cl.Net.Conn.(*batchConn); ok {
		return bc.send
	}
	return nil
}
