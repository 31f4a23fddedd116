package amqp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// AMQP 0-9-1 framing (spec §2.3.5, §4.2.3): a frame is type, channel, size,
// payload and the frame-end octet 0xCE.
const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE

	// frameOverhead is the bytes of a frame that are not payload.
	frameOverhead = 8
	// minFrameMax is the smallest frame-max a peer may ask for [spec
	// 4.2.3: 4096].
	minFrameMax = 4096
)

// protocolHeader is what a 0-9-1 client sends first.
var protocolHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// frame is one frame read off the wire; payload aliases the reader's
// buffer only until the next read.
type frame struct {
	typ     uint8
	channel uint16
	payload []byte
}

// frameReader reads frames of at most max bytes of payload.
type frameReader struct {
	r   *bufio.Reader
	max uint32
	buf []byte
}

// read reads the next frame. A frame over the negotiated frame-max, with a
// wrong end octet or of an unknown type is a connection error 501
// FRAME_ERROR [spec 4.2.3].
func (fr *frameReader) read() (frame, error) {
	var hdr [7]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return frame{}, err
	}
	f := frame{typ: hdr[0], channel: binary.BigEndian.Uint16(hdr[1:3])}
	size := binary.BigEndian.Uint32(hdr[3:7])
	if size > fr.max {
		return frame{}, connErr(codeFrameError, fmt.Sprintf("frame of %d bytes is over frame-max %d", size+frameOverhead, fr.max+frameOverhead))
	}
	switch f.typ {
	case frameMethod, frameHeader, frameBody, frameHeartbeat:
	default:
		return frame{}, connErr(codeFrameError, fmt.Sprintf("unknown frame type %d", f.typ))
	}
	if cap(fr.buf) < int(size)+1 {
		fr.buf = make([]byte, int(size)+1)
	}
	b := fr.buf[:size+1]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return frame{}, err
	}
	if b[size] != frameEnd {
		return frame{}, connErr(codeFrameError, fmt.Sprintf("frame-end octet 0x%02x, want 0xCE", b[size]))
	}
	f.payload = b[:size]
	return f, nil
}

// buffered reports whether the next frame is in the buffer whole, so that
// reading it does not touch the socket (nor its deadline).
func (fr *frameReader) buffered() bool {
	n := fr.r.Buffered()
	if n < 7 {
		return false
	}
	hdr, _ := fr.r.Peek(7)
	return uint64(n) >= 7+uint64(binary.BigEndian.Uint32(hdr[3:7]))+1
}

// appendFrame appends a frame of payload to dst.
func appendFrame(dst []byte, typ uint8, channel uint16, payload []byte) []byte {
	dst = append(dst, typ, byte(channel>>8), byte(channel))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return append(dst, frameEnd)
}

// errShort is a field that runs past its frame.
var errShort = errors.New("truncated")

// decoder reads the fields of a method or content header. It never trusts
// a length: every read is checked against what is left.
type decoder struct {
	b     []byte
	err   error
	depth int // nesting of tables and arrays
}

// maxDepth bounds the nesting of field tables and arrays.
const maxDepth = 32

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) octet() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) short() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) long() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) longlong() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) shortstr() string { return string(d.take(int(d.octet()))) }

func (d *decoder) longstr() string {
	n := d.long()
	if uint64(n) > uint64(len(d.b)) {
		d.fail(errShort)
		return ""
	}
	return string(d.take(int(n)))
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Table is an AMQP field table. Values are bool, int8, uint8, int16,
// uint16, int32, uint32, int64, float32, float64, Decimal, string, []byte,
// []any, time.Time, Table or nil.
type Table map[string]any

// Decimal is a field table's decimal value: Value × 10^-Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

func (d *decoder) table() Table {
	n := d.long()
	body := d.take(int(min(n, math.MaxInt32)))
	if d.err != nil {
		return nil
	}
	if d.depth >= maxDepth {
		d.fail(fmt.Errorf("field tables nested deeper than %d", maxDepth))
		return nil
	}
	sub := decoder{b: body, depth: d.depth + 1}
	t := Table{}
	for len(sub.b) > 0 && sub.err == nil {
		k := sub.shortstr()
		v := sub.value()
		t[k] = v
	}
	d.fail(sub.err)
	return t
}

func (d *decoder) array() []any {
	n := d.long()
	body := d.take(int(min(n, math.MaxInt32)))
	if d.err != nil {
		return nil
	}
	if d.depth >= maxDepth {
		d.fail(fmt.Errorf("field arrays nested deeper than %d", maxDepth))
		return nil
	}
	sub := decoder{b: body, depth: d.depth + 1}
	var a []any
	for len(sub.b) > 0 && sub.err == nil {
		a = append(a, sub.value())
	}
	d.fail(sub.err)
	return a
}

// value reads a typed field value (RabbitMQ's type octets, as its clients
// send them: https://www.rabbitmq.com/amqp-0-9-1-errata.html).
func (d *decoder) value() any {
	switch t := d.octet(); t {
	case 't':
		return d.octet() != 0
	case 'b':
		return int8(d.octet())
	case 'B':
		return d.octet()
	case 's':
		return int16(d.short())
	case 'u':
		return d.short()
	case 'I':
		return int32(d.long())
	case 'i':
		return d.long()
	case 'l':
		return int64(d.longlong())
	case 'f':
		return math.Float32frombits(d.long())
	case 'd':
		return math.Float64frombits(d.longlong())
	case 'D':
		return Decimal{Scale: d.octet(), Value: int32(d.long())}
	case 'S':
		return d.longstr()
	case 'x':
		n := d.long()
		if uint64(n) > uint64(len(d.b)) {
			d.fail(errShort)
			return nil
		}
		return append([]byte(nil), d.take(int(n))...)
	case 'A':
		return d.array()
	case 'T':
		return time.Unix(int64(d.longlong()), 0).UTC()
	case 'F':
		return d.table()
	case 'V':
		return nil
	default:
		if d.err == nil {
			d.fail(fmt.Errorf("unknown field type %q", t))
		}
		return nil
	}
}

// encoder builds a method's or a content header's fields.
type encoder struct{ b []byte }

func (e *encoder) octet(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) short(v uint16)    { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) long(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) longlong(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

// shortstr writes s, cut at 255 bytes (a reply text: the codes say the rest).
func (e *encoder) shortstr(s string) {
	if len(s) > 255 {
		s = s[:255]
	}
	e.octet(uint8(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) longstr(s string) {
	e.long(uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) table(t Table) {
	at := len(e.b)
	e.long(0)
	for k, v := range t {
		e.shortstr(k)
		e.value(v)
	}
	binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
}

func (e *encoder) value(v any) {
	switch v := v.(type) {
	case bool:
		e.octet('t')
		if v {
			e.octet(1)
		} else {
			e.octet(0)
		}
	case int8:
		e.octet('b')
		e.octet(uint8(v))
	case uint8:
		e.octet('B')
		e.octet(v)
	case int16:
		e.octet('s')
		e.short(uint16(v))
	case uint16:
		e.octet('u')
		e.short(v)
	case int32:
		e.octet('I')
		e.long(uint32(v))
	case uint32:
		e.octet('i')
		e.long(v)
	case int64:
		e.octet('l')
		e.longlong(uint64(v))
	case int:
		e.octet('l')
		e.longlong(uint64(v))
	case float32:
		e.octet('f')
		e.long(math.Float32bits(v))
	case float64:
		e.octet('d')
		e.longlong(math.Float64bits(v))
	case Decimal:
		e.octet('D')
		e.octet(v.Scale)
		e.long(uint32(v.Value))
	case string:
		e.octet('S')
		e.longstr(v)
	case []byte:
		e.octet('x')
		e.long(uint32(len(v)))
		e.b = append(e.b, v...)
	case []any:
		e.octet('A')
		at := len(e.b)
		e.long(0)
		for _, x := range v {
			e.value(x)
		}
		binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
	case time.Time:
		e.octet('T')
		e.longlong(uint64(v.Unix()))
	case Table:
		e.octet('F')
		e.table(v)
	case map[string]any:
		e.octet('F')
		e.table(Table(v))
	default:
		e.octet('V')
	}
}
