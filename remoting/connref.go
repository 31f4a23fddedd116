package remoting

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ferrymq/ferry/internal/rawio"
)

// minRefBody is the smallest body a client's request leaves in the
// caller's memory (Conn.sendRef): copying a smaller one costs less than
// another segment in the writev.
const minRefBody = 2 << 10

// refWriter keeps the books of the frames a Conn queued with their bodies
// by reference (sendRef). Such a frame is numbered as it is queued; the
// caller may change its body once the frame is released: written, or
// copied into the connection's memory. The writer releases what it took
// without ever waiting for the peer: it writes what the socket takes at
// once and copies the rest before it waits. A caller that gives up on a
// call before its answer (a timeout) settles its frame first (settle), so
// that it never changes a body that a later write would send.
//
// Bodies go by reference only on a connection whose writer can write
// without waiting: a TCP or Unix socket of its own writer goroutine, on
// Linux. TLS connections, and the server's, copy every body.
type refWriter struct {
	raw      syscall.RawConn // the socket, nil while references are off
	vec      rawio.Writer    // the writer's scratch for writev
	queued   uint64          // frames queued by reference so far; Conn.mu
	takenSeq uint64          // the last of them the writer took; Conn.mu
	released atomic.Uint64   // frames up to it refer to no caller's memory
	settled  *sync.Cond      // on Conn.mu: released grew
}

// init turns references on for c when its writer can write without
// waiting.
func (r *refWriter) init(c *Conn) {
	if !rawio.Supported {
		return
	}
	if r.raw = rawConn(c.nc); r.raw != nil {
		r.settled = sync.NewCond(&c.mu)
	}
}

// on reports whether bodies may go by reference.
func (r *refWriter) on() bool { return r.raw != nil }

// take numbers the batch the writer takes (with Conn.mu held): every frame
// queued by reference so far is in it, or was copied out. A batch without
// references is released at once.
func (r *refWriter) take(refs bool) uint64 {
	r.takenSeq = r.queued
	if !refs {
		r.release(r.takenSeq)
	}
	return r.takenSeq
}

// release marks the frames up to seq as referring to no caller's memory.
// Conn.mu is held.
func (r *refWriter) release(seq uint64) {
	if r.released.Load() >= seq {
		return
	}
	r.released.Store(seq)
	if r.settled != nil {
		r.settled.Broadcast()
	}
}

// sendRef queues cmd as Send does, with its body by reference when the
// connection allows and the body is large enough. It returns the frame's
// number for settle (0: the body was copied). cmd's body must not change
// until the frame is settled or the request is answered.
func (c *Conn) sendRef(cmd *Command) (uint64, error) {
	if !c.refs.on() || len(cmd.Body) < minRefBody || cmd.bodyGiven {
		return 0, c.Send(cmd)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	n, err := c.queue.addRef(cmd)
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.queued += int64(n)
	c.refs.queued++
	seq := c.refs.queued // read before flushLocked lets mu go
	return seq, c.flushLocked()
}

// settle returns once frame seq (from sendRef) refers to its body no
// more: at once when it was written, else by copying the queued bodies
// into the connection's memory, or by waiting for the writer, which
// releases what it took without waiting for the peer.
func (c *Conn) settle(seq uint64) {
	if seq == 0 || c.refs.released.Load() >= seq {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq > c.refs.takenSeq {
		c.queue.detach()
		return
	}
	for c.refs.released.Load() < seq {
		c.refs.settled.Wait()
	}
}

// writeRefs writes segs, a batch with bodies by reference numbered up to
// seq: what the socket takes at once, then, with the rest copied and the
// batch released, the rest.
func (c *Conn) writeRefs(segs [][]byte, seq uint64) error {
	i, off, err := c.refs.vec.Writev(c.refs.raw, segs)
	var rest []byte
	if err == nil && i < len(segs) {
		n := len(segs[i]) - off
		for _, s := range segs[i+1:] {
			n += len(s)
		}
		rest = append(newFrame(n), segs[i][off:]...)
		for _, s := range segs[i+1:] {
			rest = append(rest, s...)
		}
	}
	c.mu.Lock()
	c.refs.release(seq)
	c.mu.Unlock()
	if rest != nil {
		_, err = c.nc.Write(rest)
		putFrame(rest)
	}
	return err
}
