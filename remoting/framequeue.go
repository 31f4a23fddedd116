package remoting

import "net"

// A frameQueue holds encoded frames waiting for a connection's writer, in
// chunks: a frame goes at the end of the last chunk when it fits there and
// starts a new chunk when it does not, so queueing a frame never copies the
// frames queued before it (one growing buffer did, again and again, while a
// slow reader let megabytes of pull responses pile up). The writer takes all
// chunks at once and writes them with one writev. Written chunks of the
// usual size are kept for reuse, a few per connection.
//
// A frame can also be queued with its body by reference (addRef): its
// header goes into the chunk and the body stays in the caller's memory,
// written from there by the same writev. A client's 4 KiB sends then cost
// no copy of the body and a few hundred bytes of chunk each, not 4 KiB:
// the chunks of a busy connection are reused instead of allocated afresh.
type frameQueue struct {
	segs [][]byte // what the writer writes, in order: runs of the chunks' bytes, and bodies by reference
	own  [][]byte // the memory segs lie in: chunks, and frames of their own; the last chunk is appended to
	refs []int    // the indexes in segs of bodies by reference
	open bool     // the last of segs ends where the last chunk's bytes end: the next frame extends it

	spare batch    // the slices the writer gave back, for the next take
	free  [][]byte // empty chunks of chunkSize
}

// A batch is what the writer takes from the queue: the segments to write,
// the memory to give back once they are written, and whether some
// segments are callers' memory.
type batch struct {
	segs, own [][]byte
	refs      bool
}

const (
	chunkSize  = 256 << 10
	keepChunks = 4 // per connection: 1 MiB at most
)

// add encodes c at the end of the queue and returns the bytes it takes.
func (q *frameQueue) add(c *Command) (int, error) {
	h, err := newFrameHeader(c)
	if err != nil {
		return 0, err
	}
	need := h.frameLen(c)
	if need > chunkSize {
		q.addFrame(h.appendFrame(newFrame(need), c)) // a large frame: memory of its own
		return need, nil
	}
	tail := q.room(need)
	start := len(tail)
	q.grew(h.appendFrame(tail, c), start)
	return need, nil
}

// addRef is add with c's body left where it is: only the length words and
// the header are copied. The body must not change until the writer no
// longer refers to it (see Conn.settle).
func (q *frameQueue) addRef(c *Command) (int, error) {
	h, err := newFrameHeader(c)
	if err != nil {
		return 0, err
	}
	tail := q.room(h.headLen())
	start := len(tail)
	q.grew(h.appendHead(tail, c), start)
	if len(c.Body) > 0 {
		q.segs = append(q.segs, c.Body)
		q.refs = append(q.refs, len(q.segs)-1)
		q.open = false
	}
	return h.frameLen(c), nil
}

// room is the last chunk, with room for need bytes (at most chunkSize):
// a new chunk when the last one is full or a frame of its own.
func (q *frameQueue) room(need int) []byte {
	n := len(q.own)
	if n == 0 || cap(q.own[n-1]) != chunkSize || cap(q.own[n-1])-len(q.own[n-1]) < need {
		q.own = append(q.own, q.chunk(need))
		q.open = false
		n++
	}
	return q.own[n-1]
}

// grew records the last chunk, tail, grown from start by a frame's bytes:
// they extend the last segment or start one.
func (q *frameQueue) grew(tail []byte, start int) {
	q.own[len(q.own)-1] = tail
	if q.open {
		s := &q.segs[len(q.segs)-1]
		*s = (*s)[:len(*s)+len(tail)-start]
		return
	}
	q.segs = append(q.segs, tail[start:])
	q.open = true
}

// addFrame queues an encoded frame as a chunk of its own.
func (q *frameQueue) addFrame(f []byte) {
	q.own = append(q.own, f)
	q.segs = append(q.segs, f)
	q.open = false
}

// detach copies the bodies queued by reference into the queue's own
// memory: their callers may change them from now on.
func (q *frameQueue) detach() {
	for _, i := range q.refs {
		b := q.segs[i]
		var cp []byte
		if len(b) > chunkSize {
			cp = append(newFrame(len(b)), b...)
			q.own = append(q.own, cp)
		} else {
			tail := q.room(len(b))
			start := len(tail)
			tail = append(tail, b...)
			q.own[len(q.own)-1] = tail
			cp = tail[start:]
		}
		q.segs[i] = cp
		q.open = false // the copy is not where the segments before it end
	}
	q.refs = q.refs[:0]
}

// drop empties the queue, keeping no chunk: the connection is gone.
func (q *frameQueue) drop() {
	clear(q.segs)
	clear(q.own)
	q.segs, q.own, q.refs, q.open, q.free = q.segs[:0], q.own[:0], q.refs[:0], false, nil
}

// chunk is an empty chunk that holds at least need bytes.
func (q *frameQueue) chunk(need int) []byte {
	if need > chunkSize {
		return newFrame(need) // a large frame: a chunk of its own
	}
	if k := len(q.free); k > 0 {
		b := q.free[k-1]
		q.free = q.free[:k-1]
		return b
	}
	return make([]byte, 0, chunkSize)
}

func (q *frameQueue) empty() bool { return len(q.segs) == 0 }

// take hands every queued segment to the writer; the queue is then empty.
func (q *frameQueue) take() batch {
	b := batch{segs: q.segs, own: q.own, refs: len(q.refs) > 0}
	q.segs, q.own, q.refs, q.open = q.spare.segs[:0], q.spare.own[:0], q.refs[:0], false
	q.spare = batch{}
	return b
}

// giveBack takes a batch back from the writer once it is written.
func (q *frameQueue) giveBack(b batch) {
	for _, m := range b.own {
		if cap(m) == chunkSize && len(q.free) < keepChunks {
			q.free = append(q.free, m[:0])
		} else if cap(m) != chunkSize {
			putFrame(m) // a large frame's memory, for the next one (of any connection)
		}
	}
	clear(b.segs)
	clear(b.own)
	q.spare = batch{segs: b.segs[:0], own: b.own[:0]}
}

// bytes is what the batch's segments hold.
func (b *batch) bytes() int64 {
	var n int64
	for _, s := range b.segs {
		n += int64(len(s))
	}
	return n
}

// writeChunks writes bufs to nc: one write, or one writev for several.
// iov is the caller's scratch space, returned for the next call.
func writeChunks(nc net.Conn, bufs [][]byte, iov net.Buffers) (net.Buffers, error) {
	if len(bufs) == 1 {
		_, err := nc.Write(bufs[0])
		return iov, err
	}
	iov = append(iov[:0], bufs...)
	v := iov // WriteTo consumes v
	_, err := v.WriteTo(nc)
	clear(iov)
	return iov, err
}
