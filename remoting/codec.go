package remoting

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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

// ReadCommand reads one frame. It trusts no length it reads: the frame
// length is checked against maxFrame before anything is allocated, and every
// inner length against what remains of the frame.
func ReadCommand(r *bufio.Reader, maxFrame int) (*Command, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err // io.EOF on a clean close between frames
	}
	n := binary.BigEndian.Uint32(lenBuf[:])
	if n < 4 {
		return nil, fmt.Errorf("%w: frame length %d is shorter than its header length word", ErrMalformed, n)
	}
	if int64(n) > int64(maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, maxFrame)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("remoting: frame of %d bytes cut short: %w", n, err)
	}
	return DecodeFrame(frame)
}

// DecodeFrame decodes a frame without its leading length word.
func DecodeFrame(frame []byte) (*Command, error) {
	if len(frame) < 4 {
		return nil, fmt.Errorf("%w: %d bytes, no header length word", ErrMalformed, len(frame))
	}
	word := binary.BigEndian.Uint32(frame)
	ser, hlen := Serialization(word>>24), int(word&0xFFFFFF)
	if hlen > len(frame)-4 {
		return nil, fmt.Errorf("%w: header of %d bytes in a frame of %d", ErrMalformed, hlen, len(frame))
	}
	header, body := frame[4:4+hlen], frame[4+hlen:]
	var c *Command
	var err error
	switch ser {
	case JSON:
		c, err = decodeJSONHeader(header)
	case RocketMQ:
		c, err = decodeBinaryHeader(header)
	default:
		return nil, fmt.Errorf("%w: unknown header serialization %d", ErrMalformed, ser)
	}
	if err != nil {
		return nil, err
	}
	c.Serialization = ser
	if len(body) > 0 {
		c.Body = body
	}
	return c, nil
}

// jsonHeader is the JSON header as RocketMQ's clients write it; unknown
// fields (serializeTypeCurrentRPC, …) are ignored.
type jsonHeader struct {
	Code      int16             `json:"code"`
	Language  string            `json:"language"`
	Version   int16             `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int32             `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields,omitempty"`
}

func decodeJSONHeader(b []byte) (*Command, error) {
	var h jsonHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: JSON header: %v", ErrMalformed, err)
	}
	return &Command{Code: h.Code, Language: h.Language, Version: h.Version, Opaque: h.Opaque, Flag: h.Flag,
		Remark: h.Remark, ExtFields: h.ExtFields}, nil
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
func decodeBinaryHeader(b []byte) (*Command, error) {
	r := binReader{b: b}
	c := &Command{Code: int16(r.u16())}
	if lang := int(r.u8()); lang < len(languages) {
		c.Language = languages[lang]
	} else {
		c.Language = "OTHER"
	}
	c.Version = int16(r.u16())
	c.Opaque = int32(r.u32())
	c.Flag = int32(r.u32())
	c.Remark = string(r.bytes(int(r.u32())))
	ext := r.bytes(int(r.u32()))
	if r.err != "" {
		return nil, fmt.Errorf("%w: binary header: %s", ErrMalformed, r.err)
	}
	if len(ext) > 0 {
		// One string for all the fields: keys and values are slices of it.
		all := string(ext)
		n := 0 // count the fields first, so that the map is sized once
		for e := (binReader{b: ext}); e.p < len(ext) && e.err == ""; n++ {
			e.bytes(int(e.u16()))
			e.bytes(int(e.u32()))
		}
		c.ExtFields = make(map[string]string, n)
		e := binReader{b: ext}
		for e.p < len(ext) && e.err == "" {
			kl := int(e.u16())
			k0 := e.p
			e.bytes(kl)
			vl := int(e.u32())
			v0 := e.p
			e.bytes(vl)
			if e.err == "" {
				c.ExtFields[all[k0:k0+kl]] = all[v0 : v0+vl]
			}
		}
		if e.err != "" {
			return nil, fmt.Errorf("%w: binary header ext fields: %s", ErrMalformed, e.err)
		}
	}
	if r.p != len(b) {
		return nil, fmt.Errorf("%w: binary header has %d bytes after its ext fields", ErrMalformed, len(b)-r.p)
	}
	return c, nil
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
	be := binary.BigEndian
	if c.Serialization == RocketMQ { // encoded in place: no header buffer
		hlen := binaryHeaderLen(c)
		if hlen > 0xFFFFFF {
			return dst, fmt.Errorf("%w: header of %d bytes", ErrFrameTooLarge, hlen)
		}
		dst = slices.Grow(dst, 8+hlen+len(c.Body)) // one growth for the frame, not one per part
		dst = be.AppendUint32(dst, uint32(4+hlen+len(c.Body)))
		dst = be.AppendUint32(dst, uint32(RocketMQ)<<24|uint32(hlen))
		dst = appendBinaryHeader(dst, c)
		return append(dst, c.Body...), nil
	}
	if c.Serialization != JSON {
		return dst, fmt.Errorf("remoting: unknown header serialization %d", c.Serialization)
	}
	h := jsonHeader{Code: c.Code, Language: c.Language, Version: c.Version, Opaque: c.Opaque, Flag: c.Flag,
		Remark: c.Remark, ExtFields: c.ExtFields}
	header, err := json.Marshal(h)
	if err != nil {
		return dst, fmt.Errorf("remoting: encode header: %w", err)
	}
	if len(header) > 0xFFFFFF {
		return dst, fmt.Errorf("%w: header of %d bytes", ErrFrameTooLarge, len(header))
	}
	dst = be.AppendUint32(dst, uint32(4+len(header)+len(c.Body)))
	dst = be.AppendUint32(dst, uint32(JSON)<<24|uint32(len(header)))
	dst = append(dst, header...)
	return append(dst, c.Body...), nil
}

// binaryHeaderLen is the size of c's RocketMQ binary header.
func binaryHeaderLen(c *Command) int {
	n := 2 + 1 + 2 + 4 + 4 + 4 + len(c.Remark) + 4
	for k, v := range c.ExtFields {
		n += 2 + len(k) + 4 + len(v)
	}
	return n
}

func appendBinaryHeader(b []byte, c *Command) []byte {
	be := binary.BigEndian
	b = be.AppendUint16(b, uint16(c.Code))
	b = append(b, languageCode(c.Language))
	b = be.AppendUint16(b, uint16(c.Version))
	b = be.AppendUint32(b, uint32(c.Opaque))
	b = be.AppendUint32(b, uint32(c.Flag))
	b = be.AppendUint32(b, uint32(len(c.Remark)))
	b = append(b, c.Remark...)
	extLen := 0
	for k, v := range c.ExtFields {
		extLen += 2 + len(k) + 4 + len(v)
	}
	b = be.AppendUint32(b, uint32(extLen))
	for k, v := range c.ExtFields {
		b = be.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
		b = be.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}
