package remoting

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"
)

// MaxFrame is the default cap on a frame's length (16 MiB).
const MaxFrame = 16 << 20

var (
	// ErrFrameTooLarge: a frame's length is over the reader's cap. The
	// connection cannot be resynchronized and is closed.
	ErrFrameTooLarge = errors.New("remoting: frame too large")
	// ErrMalformed: a frame or header that does not parse.
	ErrMalformed = errors.New("remoting: malformed frame")
)

// FrameTooLargeError is a frame whose length word is over the reader's
// cap. It matches ErrFrameTooLarge with errors.Is.
type FrameTooLargeError struct {
	Len, Max int64 // the frame's declared length and the cap, in bytes
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("remoting: frame of %d bytes is over the limit of %d bytes", e.Len, e.Max)
}

// Is makes the error match ErrFrameTooLarge.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// checkFrameLen checks a frame's length word against maxFrame.
func checkFrameLen(n uint32, maxFrame int) error {
	if n < 4 {
		return fmt.Errorf("%w: frame length %d is shorter than its header length word", ErrMalformed, n)
	}
	if int64(n) > int64(maxFrame) {
		return &FrameTooLargeError{Len: int64(n), Max: int64(maxFrame)}
	}
	return nil
}

// ReadCommand reads one frame. It trusts no length it reads: the frame
// length is checked against maxFrame, the frame's memory grows with the
// bytes that arrive (a declared length alone allocates nothing), and every
// inner length is checked against what remains of the frame.
func ReadCommand(r *bufio.Reader, maxFrame int) (*Command, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err // io.EOF on a clean close between frames
	}
	n := binary.BigEndian.Uint32(lenBuf[:])
	if err := checkFrameLen(n, maxFrame); err != nil {
		return nil, err
	}
	frame := make([]byte, 0, min(int(n), readChunk))
	for len(frame) < int(n) {
		if len(frame) == cap(frame) {
			frame = slices.Grow(frame, min(int(n)-len(frame), len(frame)))
		}
		k, err := io.ReadFull(r, frame[len(frame):min(cap(frame), int(n))])
		frame = frame[:len(frame)+k]
		if err != nil {
			return nil, cutShort(int(n), len(frame), err)
		}
	}
	return decodeFrame(frame, false)
}

// readChunk is the memory a frame being read starts with; it doubles as
// the frame's bytes arrive.
const readChunk = 64 << 10

// cutShort is the error of a frame of n bytes whose reading stopped after
// got bytes with err.
func cutShort(n, got int, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("remoting: frame of %d bytes cut short after %d: %w", n, got, err)
}

// DecodeFrame decodes a frame without its leading length word. The
// command's body is a slice of frame.
func DecodeFrame(frame []byte) (*Command, error) { return decodeFrame(frame, false) }

// decodeFrame decodes frame; with copyBody the body is copied out of frame
// (a reader's buffer, reused), else it is a slice of frame.
func decodeFrame(frame []byte, copyBody bool) (*Command, error) {
	ser, header, body, err := splitFrame(frame)
	if err != nil {
		return nil, err
	}
	if copyBody && len(body) > 0 && ser == RocketMQ {
		// One copy for the header's strings and the body: one allocation
		// a request, not two.
		own := bytes.Clone(frame[4:])
		hlen := len(header)
		c, err := decodeBinaryHeader(own[:hlen], true)
		if err != nil {
			return nil, err
		}
		c.Serialization = ser
		c.Body = own[hlen:len(own):len(own)]
		return c, nil
	}
	c, err := decodeHeader(ser, header)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if copyBody {
			body = bytes.Clone(body)
		}
		c.Body = body
	}
	return c, nil
}

// splitFrame splits a frame without its leading length word into its
// header's serialization, the header and the body.
func splitFrame(frame []byte) (ser Serialization, header, body []byte, err error) {
	if len(frame) < 4 {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes, no header length word", ErrMalformed, len(frame))
	}
	word := binary.BigEndian.Uint32(frame)
	ser, hlen := Serialization(word>>24), int(word&0xFFFFFF)
	if hlen > len(frame)-4 {
		return 0, nil, nil, fmt.Errorf("%w: header of %d bytes in a frame of %d", ErrMalformed, hlen, len(frame))
	}
	return ser, frame[4 : 4+hlen], frame[4+hlen:], nil
}

// decodeHeader decodes a header in serialization ser. The command shares
// no memory with header.
func decodeHeader(ser Serialization, header []byte) (*Command, error) {
	var c *Command
	var err error
	switch ser {
	case JSON:
		c, err = decodeJSONHeader(header)
	case RocketMQ:
		c, err = decodeBinaryHeader(header, false)
	default:
		return nil, fmt.Errorf("%w: unknown header serialization %d", ErrMalformed, ser)
	}
	if err != nil {
		return nil, err
	}
	c.Serialization = ser
	return c, nil
}

// languages maps RocketMQ's binary language codes.
var languages = []string{"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"}

func languageCode(l string) byte {
	for i, s := range languages {
		if s == l {
			return byte(i)
		}
	}
	return 7 // OTHER
}

// decodeBinaryHeader decodes RocketMQ's binary header:
// code u16, language u8, version u16, opaque u32, flag u32,
// remark (u32 length, bytes), ext fields (u32 length, then key u16+bytes,
// value u32+bytes pairs).
//
// With owned, b is memory the command may keep (no one writes it again):
// the header's strings are slices of it. Else they are copied out of it.
func decodeBinaryHeader(b []byte, owned bool) (*Command, error) {
	r := binReader{b: b}
	code := int16(r.u16())
	lang := int(r.u8())
	version := int16(r.u16())
	opaque := int32(r.u32())
	flag := int32(r.u32())
	remark := r.bytes(int(r.u32()))
	ext := r.bytes(int(r.u32()))
	if r.err != "" {
		return nil, fmt.Errorf("%w: binary header: %s", ErrMalformed, r.err)
	}
	c := newCommand(countFields(ext)) // with room for the fields: one allocation

	c.Code, c.Version, c.Opaque, c.Flag = code, version, opaque, flag
	if len(remark) > 0 {
		c.Remark = str(remark, owned)
	}
	if lang < len(languages) {
		c.Language = languages[lang]
	} else {
		c.Language = "OTHER"
	}
	if len(ext) > 0 {
		// One string for all the fields: names and values are slices of it.
		all := str(ext, owned)
		for p := 0; p < len(ext); {
			if len(ext)-p < 2 {
				return nil, extError(2, p, len(ext))
			}
			kl := int(binary.BigEndian.Uint16(ext[p:]))
			p += 2
			if kl > len(ext)-p {
				return nil, extError(kl, p, len(ext))
			}
			name := all[p : p+kl]
			p += kl
			if len(ext)-p < 4 {
				return nil, extError(4, p, len(ext))
			}
			vl := uint64(binary.BigEndian.Uint32(ext[p:]))
			p += 4
			if vl > uint64(len(ext)-p) {
				return nil, extError(int64(vl), p, len(ext))
			}
			c.Fields = append(c.Fields, Field{name, all[p : p+int(vl)]})
			p += int(vl)
		}
	}
	if r.p != len(b) {
		return nil, fmt.Errorf("%w: binary header has %d bytes after its ext fields", ErrMalformed, len(b)-r.p)
	}
	return c, nil
}

// str is b as a string: b itself when owned (memory nothing writes
// again), else a copy.
func str(b []byte, owned bool) string {
	if owned {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

// countFields is how many ext fields the binary header's ext bytes hold
// (or start: a field cut short counts), without checking them.
func countFields(ext []byte) int {
	n := 0
	for p := 0; p < len(ext); n++ {
		if len(ext)-p < 6 {
			return n + 1
		}
		p += 2 + int(binary.BigEndian.Uint16(ext[p:]))
		if len(ext)-p < 4 {
			return n + 1
		}
		vl := uint64(binary.BigEndian.Uint32(ext[p:]))
		if vl > uint64(len(ext)-p-4) {
			return n + 1
		}
		p += 4 + int(vl)
	}
	return n
}

// extError is the error of an ext field whose next want bytes, at byte at
// of the ext fields' n, are not there.
func extError[N int | int64](want N, at, n int) error {
	return fmt.Errorf("%w: binary header ext fields: %d bytes wanted at byte %d of %d", ErrMalformed, want, at, n)
}

type binReader struct {
	b   []byte
	p   int
	err string
}

func (r *binReader) take(n int) []byte {
	if r.err != "" {
		return nil
	}
	if n < 0 || n > len(r.b)-r.p {
		r.err = fmt.Sprintf("%d bytes wanted at byte %d of %d", n, r.p, len(r.b))
		return nil
	}
	r.p += n
	return r.b[r.p-n : r.p]
}

func (r *binReader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *binReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *binReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *binReader) bytes(n int) []byte { return r.take(n) }

// AppendFrame appends c's frame, length word included, to dst in c's
// serialization.
func AppendFrame(dst []byte, c *Command) ([]byte, error) {
	h, err := newFrameHeader(c)
	if err != nil {
		return dst, err
	}
	return h.appendFrame(dst, c), nil
}

// frameHeader is a command's header, measured before it is written, so
// that the frame can be given its exact room first.
type frameHeader struct {
	len  int
	json []byte // the JSON header; nil for the binary one, written in place
}

func newFrameHeader(c *Command) (frameHeader, error) {
	var h frameHeader
	switch c.Serialization {
	case RocketMQ:
		h.len = binaryHeaderLen(c)
	case JSON:
		h.json = appendJSONHeader(nil, c)
		h.len = len(h.json)
	default:
		return h, fmt.Errorf("remoting: unknown header serialization %d", c.Serialization)
	}
	if h.len > 0xFFFFFF {
		return h, fmt.Errorf("%w: header of %d bytes", ErrFrameTooLarge, h.len)
	}
	return h, nil
}

// frameLen is the bytes c's frame takes, length word included.
func (h frameHeader) frameLen(c *Command) int { return 8 + h.len + len(c.Body) }

// headLen is the bytes of c's frame before its body.
func (h frameHeader) headLen() int { return 8 + h.len }

// appendFrame appends c's frame with header h to dst, growing it once.
func (h frameHeader) appendFrame(dst []byte, c *Command) []byte {
	dst = slices.Grow(dst, h.frameLen(c))
	return append(h.appendHead(dst, c), c.Body...)
}

// appendHead appends c's frame up to its body: the length words and the
// header.
func (h frameHeader) appendHead(dst []byte, c *Command) []byte {
	be := binary.BigEndian
	dst = be.AppendUint32(dst, uint32(4+h.len+len(c.Body)))
	if h.json != nil {
		dst = be.AppendUint32(dst, uint32(JSON)<<24|uint32(h.len))
		dst = append(dst, h.json...)
	} else {
		dst = be.AppendUint32(dst, uint32(RocketMQ)<<24|uint32(h.len))
		dst = appendBinaryHeader(dst, c, h.len)
	}
	return dst
}

// binaryFixedLen is the binary header's size without its remark and ext
// fields: code, language, version, opaque, flag, and the two length words.
const binaryFixedLen = 2 + 1 + 2 + 4 + 4 + 4 + 4

// binaryHeaderLen is the size of c's RocketMQ binary header.
func binaryHeaderLen(c *Command) int {
	n := binaryFixedLen + len(c.Remark)
	for _, f := range c.Fields {
		n += 2 + len(f.Name) + 4 + len(f.Value)
	}
	return n
}

// appendBinaryHeader writes c's binary header, hlen bytes (binaryHeaderLen).
func appendBinaryHeader(b []byte, c *Command, hlen int) []byte {
	be := binary.BigEndian
	b = be.AppendUint16(b, uint16(c.Code))
	b = append(b, languageCode(c.Language))
	b = be.AppendUint16(b, uint16(c.Version))
	b = be.AppendUint32(b, uint32(c.Opaque))
	b = be.AppendUint32(b, uint32(c.Flag))
	b = be.AppendUint32(b, uint32(len(c.Remark)))
	b = append(b, c.Remark...)
	b = be.AppendUint32(b, uint32(hlen-binaryFixedLen-len(c.Remark))) // the ext fields' length
	for _, f := range c.Fields {
		b = appendBinaryField(b, f.Name, f.Value)
	}
	return b
}

// appendBinaryField writes one ext field: name u16+bytes, value u32+bytes.
func appendBinaryField(b []byte, name, value string) []byte {
	be := binary.BigEndian
	b = be.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = be.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}
