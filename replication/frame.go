package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frames on a replication connection (docs/replication.md, "Protocol"):
//
//	u32 length of what follows (type and payload), at most MaxFrame
//	u8  type
//	    payload, big-endian
//
// A decoder trusts no length it reads: the frame length is checked against
// the bound before anything is allocated, and every field against what is
// left of the payload.
const (
	frameChallenge = 1 // master → replica: u16 version, 16-byte nonce
	frameHello     = 2 // replica → master: see hello
	frameRefuse    = 3 // master → replica: u16 length, reason
	frameTruncate  = 4 // master → replica: u64 log id, i64 offset, i64 epoch
	frameData      = 5 // master → replica: i64 offset, i64 master end, raw records
	frameAck       = 6 // replica → master: i64 offset durable on the replica

	protocolVersion = 1
	nonceLen        = 16
	macLen          = 32
	maxGroupLen     = 255
	maxEpochs       = 1 << 16
	// dataHeader is a DATA frame's bytes before its records.
	dataHeader = 4 + 1 + 8 + 8
)

var errMalformed = errors.New("replication: malformed frame")

// readFrame reads one frame into buf (grown as needed, up to max bytes)
// and returns its type and payload, which share buf.
func readFrame(r io.Reader, buf *[]byte, max int) (byte, []byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n < 1 || int64(n) > int64(max) {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes, want 1..%d (replication.max-frame)", errMalformed, n, max)
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// frameBuf starts a frame of type t in a buffer with room for n more bytes.
func frameBuf(t byte, n int) []byte {
	b := make([]byte, 5, 5+n)
	b[4] = t
	return b
}

// finish writes the frame's length into b.
func finish(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// dec reads fields of a payload and remembers the first overrun.
type dec struct {
	b   []byte
	err error
}

func (d *dec) need(n int, what string) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: %s of %d bytes, %d left", errMalformed, what, n, len(d.b))
		return false
	}
	return true
}

func (d *dec) u8(what string) uint8 {
	if !d.need(1, what) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) u16(what string) uint16 {
	if !d.need(2, what) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *dec) u32(what string) uint32 {
	if !d.need(4, what) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) u64(what string) uint64 {
	if !d.need(8, what) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) bytes(n int, what string) []byte {
	if !d.need(n, what) {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// end reports an error if bytes are left over.
func (d *dec) end(frame string) error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes after the %s frame", errMalformed, len(d.b), frame)
	}
	return d.err
}

type challenge struct {
	version uint16
	nonce   []byte
}

func (c challenge) encode() []byte {
	b := frameBuf(frameChallenge, 2+nonceLen)
	b = binary.BigEndian.AppendUint16(b, c.version)
	return finish(append(b, c.nonce...))
}

func decodeChallenge(p []byte) (challenge, error) {
	d := dec{b: p}
	c := challenge{version: d.u16("version"), nonce: d.bytes(nonceLen, "nonce")}
	return c, d.end("challenge")
}

// hello is the replica's handshake.
type hello struct {
	version  uint16
	group    string
	id       int64
	segSize  int64
	logID    uint64
	end      int64
	epochs   []Epoch
	mac      []byte // empty when the replica has no cluster secret
	unsigned []byte // the payload before the MAC, what the MAC covers
}

func (h hello) encode(sign func(unsigned []byte) []byte) []byte {
	b := frameBuf(frameHello, 2+1+len(h.group)+8*4+4+16*len(h.epochs)+1+macLen)
	b = binary.BigEndian.AppendUint16(b, h.version)
	b = append(b, byte(len(h.group)))
	b = append(b, h.group...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.id))
	b = binary.BigEndian.AppendUint64(b, uint64(h.segSize))
	b = binary.BigEndian.AppendUint64(b, h.logID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.end))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.epochs)))
	for _, e := range h.epochs {
		b = binary.BigEndian.AppendUint64(b, uint64(e.N))
		b = binary.BigEndian.AppendUint64(b, uint64(e.Start))
	}
	var mac []byte
	if sign != nil {
		mac = sign(b[5:])
	}
	b = append(b, byte(len(mac)))
	return finish(append(b, mac...))
}

func decodeHello(p []byte) (hello, error) {
	d := dec{b: p}
	var h hello
	h.version = d.u16("version")
	h.group = string(d.bytes(int(d.u8("group length")), "group"))
	h.id = int64(d.u64("id"))
	h.segSize = int64(d.u64("segment size"))
	h.logID = d.u64("log id")
	h.end = int64(d.u64("end offset"))
	n := d.u32("epoch count")
	if d.err == nil && (n > maxEpochs || int(n) > len(d.b)/16) {
		return h, fmt.Errorf("%w: %d epochs in %d bytes (at most %d)", errMalformed, n, len(d.b), maxEpochs)
	}
	if d.err == nil && n > 0 {
		h.epochs = make([]Epoch, n)
		for i := range h.epochs {
			h.epochs[i] = Epoch{N: int64(d.u64("epoch")), Start: int64(d.u64("epoch start"))}
		}
	}
	if d.err == nil {
		h.unsigned = p[:len(p)-len(d.b)]
	}
	if m := int(d.u8("mac length")); m != 0 && m != macLen && d.err == nil {
		return h, fmt.Errorf("%w: a MAC of %d bytes, want 0 or %d", errMalformed, m, macLen)
	} else {
		h.mac = d.bytes(m, "mac")
	}
	if err := d.end("hello"); err != nil {
		return h, err
	}
	if h.id < 0 || h.segSize <= 0 || h.end < 0 {
		return h, fmt.Errorf("%w: hello with id %d, segment size %d, end %d", errMalformed, h.id, h.segSize, h.end)
	}
	for i, e := range h.epochs {
		if e.N < 0 || e.Start < 0 || i > 0 && (e.N <= h.epochs[i-1].N || e.Start < h.epochs[i-1].Start) {
			return h, fmt.Errorf("%w: epoch history not increasing at entry %d (%d@%d)", errMalformed, i, e.N, e.Start)
		}
	}
	return h, nil
}

func encodeRefuse(reason string) []byte {
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	b := frameBuf(frameRefuse, 2+len(reason))
	b = binary.BigEndian.AppendUint16(b, uint16(len(reason)))
	return finish(append(b, reason...))
}

func decodeRefuse(p []byte) (string, error) {
	d := dec{b: p}
	r := string(d.bytes(int(d.u16("reason length")), "reason"))
	return r, d.end("refuse")
}

type truncate struct {
	logID uint64
	off   int64
	epoch int64
}

func (t truncate) encode() []byte {
	b := frameBuf(frameTruncate, 24)
	b = binary.BigEndian.AppendUint64(b, t.logID)
	b = binary.BigEndian.AppendUint64(b, uint64(t.off))
	return finish(binary.BigEndian.AppendUint64(b, uint64(t.epoch)))
}

func decodeTruncate(p []byte) (truncate, error) {
	d := dec{b: p}
	t := truncate{logID: d.u64("log id"), off: int64(d.u64("offset")), epoch: int64(d.u64("epoch"))}
	if err := d.end("truncate"); err != nil {
		return t, err
	}
	if t.off < 0 || t.epoch < 0 {
		return t, fmt.Errorf("%w: truncate to %d in epoch %d", errMalformed, t.off, t.epoch)
	}
	return t, nil
}

// appendDataHeader writes a DATA frame's header for records of n bytes
// into b[:dataHeader].
func putDataHeader(b []byte, off, masterEnd int64, n int) {
	binary.BigEndian.PutUint32(b, uint32(1+16+n))
	b[4] = frameData
	binary.BigEndian.PutUint64(b[5:], uint64(off))
	binary.BigEndian.PutUint64(b[13:], uint64(masterEnd))
}

type data struct {
	off, masterEnd int64
	records        []byte // shares the payload
}

func decodeData(p []byte) (data, error) {
	d := dec{b: p}
	x := data{off: int64(d.u64("offset")), masterEnd: int64(d.u64("master end"))}
	if d.err != nil {
		return x, d.err
	}
	x.records = d.b
	if x.off < 0 || x.masterEnd < 0 {
		return x, fmt.Errorf("%w: data at %d, master end %d", errMalformed, x.off, x.masterEnd)
	}
	return x, nil
}

func encodeAck(off int64) []byte {
	b := frameBuf(frameAck, 8)
	return finish(binary.BigEndian.AppendUint64(b, uint64(off)))
}

func decodeAck(p []byte) (int64, error) {
	d := dec{b: p}
	off := int64(d.u64("offset"))
	if err := d.end("ack"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("%w: ack of offset %d", errMalformed, off)
	}
	return off, nil
}
