package remoting

import "sync/atomic"

// A server's reader copied each request out of its read buffer, which the
// next read overwrites: at 4 KiB a body, that copy was about a tenth of the
// broker's CPU in a publish. A request its handler will release once done
// with the body (a send: the native front-end releases it when the store
// has copied the message) keeps its body where it lies in the buffer
// instead, the header's strings copied apart. The buffer is then lent: the
// reader no longer moves bytes over it nor gives it back to the pool, and
// reads on into a fresh buffer once it needs room, copying over only the
// bytes of an incomplete frame. The buffer goes back to the pool when the
// reader has left it and every request lent a part of it was released; a
// request never released leaves it to the collector.
const minLentBody = 1 << 10 // smaller bodies cost little to copy

// lease counts the holders of a lent read buffer: its reader while it
// reads from it, and each request whose body lies in it.
type lease struct {
	arr  *[bufSize]byte
	refs atomic.Int32
}

// drop lets go of one hold; the last gives the buffer back to the pool.
func (l *lease) drop() {
	if l.refs.Add(-1) == 0 {
		bufPool.Put(l.arr)
	}
}

// giveBuffer lets go of the reader's buffer: back to the pool, or, when
// lent, the reader's hold on it.
func (fr *frameReader) giveBuffer() {
	if fr.lent != nil {
		fr.lent.drop()
		fr.lent = nil
		return
	}
	bufPool.Put(fr.arr)
}

// renew moves the buffered bytes to a fresh buffer, leaving the lent one
// to the requests that hold parts of it.
func (fr *frameReader) renew() {
	arr := bufPool.Get().(*[bufSize]byte)
	w := copy(arr[:], fr.buf[fr.r:fr.w])
	fr.giveBuffer()
	fr.arr, fr.buf, fr.r, fr.w = arr, arr[:], 0, w
}

// decodeLending decodes frame, which lies in the pooled buffer: a request
// that lends says yes to, with a body of minLentBody or more, keeps its
// body there (see above); any other is copied out.
func (fr *frameReader) decodeLending(frame []byte) (*Command, error) {
	if fr.arr == nil {
		return decodeFrame(frame, true)
	}
	ser, header, body, err := splitFrame(frame)
	if err != nil || len(body) < minLentBody {
		return decodeFrame(frame, true)
	}
	c, err := decodeHeader(ser, header) // shares no memory with frame
	if err != nil {
		return nil, err
	}
	if !fr.lends(c) {
		c.Body = append([]byte(nil), body...)
		return c, nil
	}
	if fr.lent == nil {
		fr.lent = &lease{arr: fr.arr}
		fr.lent.refs.Store(1) // the reader's
	}
	fr.lent.refs.Add(1)
	c.Body = body[:len(body):len(body)]
	c.lent = fr.lent
	return c, nil
}
