package remoting

import "net"

// A frameQueue holds encoded frames waiting for a connection's writer, in
// chunks: a frame goes at the end of the last chunk when it fits there and
// starts a new chunk when it does not, so queueing a frame never copies the
// frames queued before it (one growing buffer did, again and again, while a
// slow reader let megabytes of pull responses pile up). The writer takes all
// chunks at once and writes them with one writev. Written chunks of the
// usual size are kept for reuse, a few per connection.
type frameQueue struct {
	chunks [][]byte // queued frames, in order; only the last one takes more
	spare  [][]byte // the chunk list the writer gave back, for the next take
	free   [][]byte // empty chunks of chunkSize
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
	n := len(q.chunks)
	if n == 0 || cap(q.chunks[n-1])-len(q.chunks[n-1]) < need {
		q.chunks = append(q.chunks, q.chunk(need))
		n++
	}
	q.chunks[n-1] = h.appendFrame(q.chunks[n-1], c)
	return need, nil
}

// addFrame queues an encoded frame as a chunk of its own.
func (q *frameQueue) addFrame(f []byte) { q.chunks = append(q.chunks, f) }

// drop empties the queue, keeping no chunk: the connection is gone.
func (q *frameQueue) drop() {
	clear(q.chunks)
	q.chunks, q.free = q.chunks[:0], nil
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

func (q *frameQueue) empty() bool { return len(q.chunks) == 0 }

// take hands every queued chunk to the writer; the queue is then empty.
func (q *frameQueue) take() [][]byte {
	bufs := q.chunks
	q.chunks, q.spare = q.spare[:0], nil
	return bufs
}

// giveBack takes the chunks back from the writer once they are written.
func (q *frameQueue) giveBack(bufs [][]byte) {
	for _, b := range bufs {
		if cap(b) == chunkSize && len(q.free) < keepChunks {
			q.free = append(q.free, b[:0])
		} else if cap(b) != chunkSize {
			putFrame(b) // a large frame's memory, for the next one (of any connection)
		}
	}
	clear(bufs)
	q.spare = bufs[:0]
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
