package remoting

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// bufSize is a connection's read buffer while bytes flow: frames up to it
// are decoded where they lie in it.
const bufSize = 64 << 10

// parkSize is how many bytes of an incomplete frame a waiting reader keeps
// inline; more are kept in memory of their exact size.
const parkSize = 256

// bufPool holds the read buffers of the server's connections, which take
// one only while bytes flow.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// frameReader reads frames off a connection.
//
// A server's reader (pooled) holds a buffer only while bytes flow: when a
// read would wait, the buffer goes back to bufPool and the bytes of an
// incomplete frame, if any, are set aside in memory of their size. An idle
// connection then costs a few hundred bytes, not a buffer. On a socket
// (rd a syscall.Conn) the reader knows that a read would wait, as the
// runtime's own reads do: the buffer is given back only then, and a busy
// connection reads with one syscall as before. On other connections (TLS)
// a read starts into the small inline space whenever few bytes are
// buffered, and the buffer is taken once bytes came.
//
// A frame larger than the buffer is read into memory of its own, which
// grows as its bytes arrive: a declared length alone allocates nothing.
type frameReader struct {
	rd     io.Reader
	raw    syscall.RawConn // rd's socket, when it has one
	pooled bool            // the buffer comes from bufPool and goes back when a read waits

	arr    *[bufSize]byte // the pooled buffer
	buf    []byte         // the buffer, nil while parked; buffered bytes are buf[r:w]
	r, w   int
	parked []byte // while buf is nil: the bytes of an incomplete frame
	small  [parkSize]byte

	// lends, when set, says which requests read from the buffer keep
	// their bodies where they lie in it (lent.go); lent is the buffer's
	// lease while any do.
	lends func(*Command) bool
	lent  *lease

	// reading, when set, counts the bytes of large frames being read,
	// server-wide; past maxReading (when set) a large frame's reading
	// stops with a *ReadBudgetError.
	reading    *atomic.Int64
	maxReading int64
}

// ReadBudgetError: the frames larger than a read buffer that are arriving
// on all of a server's connections hold more than the server's budget;
// this one's reading stopped. Req is its request's header, when it had
// arrived (nil otherwise).
type ReadBudgetError struct {
	Max int64
	Req *Command
}

func (e *ReadBudgetError) Error() string {
	return fmt.Sprintf("remoting: the frames being read hold more than the limit of %d bytes", e.Max)
}

func newFrameReader(rd io.Reader, pooled bool) *frameReader {
	fr := &frameReader{rd: rd, pooled: pooled}
	if pooled {
		fr.raw = rawConn(rd)
	}
	return fr
}

// buffered is the bytes read and not yet consumed.
func (fr *frameReader) buffered() int { return fr.w - fr.r + len(fr.parked) }

// frameBuffered reports whether a whole frame waits in the buffer, so
// that reading it does not block.
func (fr *frameReader) frameBuffered() bool {
	n := fr.w - fr.r
	return n >= 4 && n >= 4+int(binary.BigEndian.Uint32(fr.buf[fr.r:]))
}

// unpark gives the reader a buffer holding the parked bytes.
func (fr *frameReader) unpark() {
	if fr.buf != nil {
		return
	}
	if fr.pooled {
		fr.arr = bufPool.Get().(*[bufSize]byte)
		fr.buf = fr.arr[:]
	} else {
		fr.buf = make([]byte, bufSize)
	}
	fr.r, fr.w = 0, copy(fr.buf, fr.parked)
	fr.parked = nil
}

// park gives a pooled buffer back, setting its bytes aside.
func (fr *frameReader) park() {
	if !fr.pooled || fr.buf == nil {
		return
	}
	n := fr.w - fr.r
	if n <= parkSize {
		fr.parked = fr.small[:n]
	} else {
		fr.parked = make([]byte, n)
	}
	copy(fr.parked, fr.buf[fr.r:fr.w])
	fr.giveBuffer()
	fr.arr, fr.buf, fr.r, fr.w = nil, nil, 0, 0
}

// release gives the buffer back for good: the connection is done.
func (fr *frameReader) release() {
	if fr.pooled && fr.arr != nil {
		fr.giveBuffer()
	}
	fr.arr, fr.buf, fr.parked, fr.r, fr.w = nil, nil, nil, 0, 0
}

// fill reads at least one more byte into the buffer, waiting for it. The
// caller left room after w (or the reader is parked).
func (fr *frameReader) fill() error {
	if fr.raw != nil {
		var n int
		var rerr error
		err := fr.raw.Read(func(fd uintptr) bool {
			fr.unpark()
			n, rerr = readFD(fd, fr.buf[fr.w:])
			if rerr == syscall.EAGAIN {
				fr.park() // nothing to read: wait without the buffer
				return false
			}
			return true
		})
		return fr.filled(n, err, rerr)
	}
	if fr.pooled && fr.buffered() <= parkSize/2 {
		fr.park()
		k := len(fr.parked)
		n, err := fr.rd.Read(fr.small[k:])
		if n > 0 {
			fr.parked = fr.small[:k+n]
			fr.unpark()
			return nil
		}
		return readError(err)
	}
	fr.unpark()
	n, err := fr.rd.Read(fr.buf[fr.w:])
	fr.w += n
	if n > 0 {
		return nil
	}
	return readError(err)
}

// filled ends a read on the socket: n bytes read, err from the runtime
// (deadline, closed), rerr from the read.
func (fr *frameReader) filled(n int, err, rerr error) error {
	if err := rawReadError(n, err, rerr); err != nil {
		return err
	}
	fr.w += n
	return nil
}

// rawReadError is the error of a read of n bytes through a RawConn: err is
// RawConn.Read's, rerr the read's own; a read of nothing is the end.
func rawReadError(n int, err, rerr error) error {
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return &readErr{rerr}
	case n == 0:
		return io.EOF
	}
	return nil
}

// readErr is a failed read on the socket.
type readErr struct{ err error }

func (e *readErr) Error() string { return "read: " + e.err.Error() }
func (e *readErr) Unwrap() error { return e.err }

// readError is err of a read that returned no bytes.
func readError(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// ensure buffers at least n bytes (n ≤ bufSize), reading as needed.
func (fr *frameReader) ensure(n int) error {
	for fr.buffered() < n {
		if fr.buf != nil && len(fr.buf)-fr.r < n { // move the bytes to the front: room for n
			if fr.lent != nil {
				fr.renew() // not over lent bodies: to a buffer of its own
			} else {
				fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
				fr.r = 0
			}
		}
		if err := fr.fill(); err != nil {
			return err
		}
	}
	fr.unpark()
	return nil
}

// readDirect reads at least one byte into p, which is not the buffer,
// waiting for them.
func (fr *frameReader) readDirect(p []byte) (int, error) {
	if fr.raw == nil {
		n, err := fr.rd.Read(p)
		if n > 0 {
			return n, nil
		}
		return 0, readError(err)
	}
	var n int
	var rerr error
	err := fr.raw.Read(func(fd uintptr) bool {
		n, rerr = readFD(fd, p)
		return rerr != syscall.EAGAIN
	})
	if err := rawReadError(n, err, rerr); err != nil {
		return 0, err
	}
	return n, nil
}

// readCommand reads and decodes one frame. A frame over maxFrame is a
// *FrameTooLargeError, with its length word consumed: header can then read
// its header. io.EOF is a clean end between frames.
func (fr *frameReader) readCommand(maxFrame int) (*Command, error) {
	if err := fr.ensure(4); err != nil {
		if errors.Is(err, io.EOF) && fr.buffered() > 0 {
			err = fmt.Errorf("remoting: frame length cut short: %w", io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.buf[fr.r:])
	if err := checkFrameLen(n, maxFrame); err != nil {
		fr.r += 4
		return nil, err
	}
	if 4+int(n) <= bufSize { // the usual frame: decoded where it lies
		if err := fr.ensure(4 + int(n)); err != nil {
			return nil, cutShort(int(n), fr.buffered()-4, err)
		}
		frame := fr.buf[fr.r+4 : fr.r+4+int(n)]
		fr.r += 4 + int(n)
		if fr.lends != nil {
			return fr.decodeLending(frame)
		}
		return decodeFrame(frame, true)
	}
	return fr.readLarge(int(n))
}

// readLarge reads a frame of n bytes, more than the buffer holds, into
// memory of its own that grows as the bytes arrive. Its length word is in
// the buffer.
func (fr *frameReader) readLarge(n int) (*Command, error) {
	fr.r += 4
	got := min(fr.w-fr.r, n)
	frame := getFrame(n)
	if frame == nil && !fr.pooled && n <= maxExactFrame {
		frame = make([]byte, 0, n) // a client's frame: see maxExactFrame
	}
	if frame == nil {
		frame = make([]byte, 0, max(got, min(n, readChunk)))
	}
	frame = append(frame, fr.buf[fr.r:fr.r+got]...)
	fr.r += got
	if fr.reading != nil {
		fr.reading.Add(int64(got))
		defer func() { fr.reading.Add(-int64(len(frame))) }()
	}
	if len(frame) < n {
		fr.park() // the buffer is empty: not needed while the frame arrives
	}
	for len(frame) < n {
		if fr.maxReading > 0 && fr.reading.Load() > fr.maxReading {
			return nil, &ReadBudgetError{Max: fr.maxReading, Req: partialHeader(frame)}
		}
		if len(frame) == cap(frame) {
			want := min(n, 2*len(frame)) // no more than twice what arrived
			if want == n {
				want = max(n, min(frameCap(n), 2*len(frame))) // the size class, for the cache
			}
			frame = slices.Grow(frame, want-len(frame))
		}
		k, err := fr.readDirect(frame[len(frame):min(cap(frame), n)])
		frame = frame[:len(frame)+k]
		if fr.reading != nil {
			fr.reading.Add(int64(k))
		}
		if err != nil {
			return nil, cutShort(n, len(frame), err)
		}
	}
	c, err := decodeFrame(frame, false)
	if err == nil {
		c.frame = frame
	}
	return c, err
}

// maxExactFrame is the largest frame a client's reader (not pooled) reads
// into memory of the frame's declared size at once, rather than growing it
// as the bytes arrive: a pull response that its messages keep as their
// memory (the SDK decodes one of up to 256 KiB in place) is then read
// without copies. A client's peer is the server it chose, and this bounds
// what a declared length alone can make it allocate.
const maxExactFrame = 256 << 10

// partialHeader decodes the header at the start of a frame's first
// bytes, nil when it has not arrived whole or does not decode.
func partialHeader(frame []byte) *Command {
	if len(frame) < 4 {
		return nil
	}
	word := binary.BigEndian.Uint32(frame)
	ser, hlen := Serialization(word>>24), int(word&0xFFFFFF)
	if hlen > len(frame)-4 {
		return nil
	}
	c, err := decodeHeader(ser, frame[4:4+hlen])
	if err != nil {
		return nil
	}
	return c
}

// maxPeekHeader caps the header read of a frame too large to read.
const maxPeekHeader = 16 << 10

// header reads and decodes the header of a frame of n bytes whose length
// word was consumed: a frame too large to read, whose request is answered
// before the connection closes. Its header is read only when it is at
// most maxPeekHeader bytes.
func (fr *frameReader) header(n int64) (*Command, error) {
	if err := fr.ensure(4); err != nil {
		return nil, err
	}
	word := binary.BigEndian.Uint32(fr.buf[fr.r:])
	ser, hlen := Serialization(word>>24), int(word&0xFFFFFF)
	if int64(hlen) > n-4 || hlen > maxPeekHeader {
		return nil, fmt.Errorf("%w: header of %d bytes in a frame of %d (read up to %d)", ErrMalformed, hlen, n, maxPeekHeader)
	}
	if err := fr.ensure(4 + hlen); err != nil {
		return nil, err
	}
	c, err := decodeHeader(ser, fr.buf[fr.r+4:fr.r+4+hlen])
	fr.r += 4 + hlen
	return c, err
}
