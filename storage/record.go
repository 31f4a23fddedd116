package storage

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"unsafe"
)

// Record frame, big-endian. Every record in the commit log is
//
//	off  size field
//	  0     4 size          total bytes of the record, this field included
//	  4     4 magic         recordMagic (format version 1) or blankMagic
//	  8     4 crc           CRC32C (Castagnoli) of bytes [12, size)
//	 12     4 flags
//	 16     4 queue id
//	 20     8 queue offset
//	 28     8 log offset    where the record starts in the commit log
//	 36     8 born time     unix nanoseconds, set by the producer
//	 44     8 store time    unix nanoseconds, set by the store
//	 52     8 deliver at    unix nanoseconds; 0 for immediate delivery
//	 60     4 reconsume times
//	 64     4 subject hash  SubjectHash(subject), copied into the queue index
//	 68     1 topic length, then the topic
//	        2 subject length, then the subject
//	        2 key count, then for each key: 2 length, bytes
//	        2 property count, then for each: 2 length, name, 2 length, value
//	        4 body length, then the body
//
// A blank record (magic blankMagic, crc 0) fills the unused end of a sealed
// segment; its size reaches the end of the segment. A record carries its own
// log offset, so a copy of the log is self-describing and its offsets stable.
const (
	recordMagic = 0xFE77A001
	blankMagic  = 0xFE77B1A0

	headerSize      = 12 // size, magic, crc: the least a reader needs to frame a record
	fixedSize       = 68 // all fixed-width fields
	maxTopicLen     = 127
	maxFieldLen     = 1<<16 - 1
	maxQueueID      = 1<<16 - 1
	minRecordSize   = fixedSize + 1 + 2 + 2 + 2 + 4
	recordFieldsOff = fixedSize + 1 // where variable fields start, after the topic length

	maxMessageSizeLimit = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxRecordSize is the largest record a store with this max message size writes.
func maxRecordSize(maxMessage int) int { return fixedSize + 1 + maxTopicLen + maxMessage }

// Message is one stored message. Fields from QueueOffset down are set by the
// store on append and filled on read.
type Message struct {
	Topic          string
	QueueID        int
	Subject        string
	Keys           []string
	Properties     Properties
	Body           []byte
	Flags          uint32
	BornTime       int64 // unix nanoseconds
	DeliverAt      int64 // unix nanoseconds; 0 means now
	ReconsumeTimes int32

	QueueOffset int64
	LogOffset   int64
	StoreTime   int64 // unix nanoseconds
	Size        int   // bytes of the record in the commit log
}

// SubjectHash is the hash of a subject kept in the queue index, so that a
// filtered read can skip records without reading them. Filters compute it
// with the same function.
func SubjectHash(subject string) uint32 {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(subject); i++ {
		h ^= uint32(subject[i])
		h *= 16777619
	}
	return h
}

// keyHash is the 64-bit FNV-1a hash of a message key, kept in the key index.
func keyHash(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h
}

// validTopic reports whether name is a topic name: 1..127 of letters, digits,
// '_', '-', '%' and '|'. The name is also a directory name on disk.
func validTopic(name string) error {
	if len(name) == 0 || len(name) > maxTopicLen {
		return fmt.Errorf("%w: topic name of %d characters, want 1..%d", ErrInvalidMessage, len(name), maxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '%' || c == '|') {
			return fmt.Errorf("%w: topic name %q has %q; allowed are letters, digits, '_', '-', '%%', '|'", ErrInvalidMessage, name, c)
		}
	}
	return nil
}

// ValidTopic checks a topic name against the rules of the record format.
func ValidTopic(name string) error { return validTopic(name) }

// encodedSize checks m against the format's and the store's limits and returns
// the size of its record.
func (m *Message) encodedSize(maxMessage int) (int, error) {
	if err := validTopic(m.Topic); err != nil {
		return 0, err
	}
	if m.QueueID < 0 || m.QueueID > maxQueueID {
		return 0, fmt.Errorf("%w: queue id %d, want 0..%d", ErrInvalidMessage, m.QueueID, maxQueueID)
	}
	if len(m.Subject) > maxFieldLen {
		return 0, fmt.Errorf("%w: subject of %d bytes, limit %d", ErrMessageTooLarge, len(m.Subject), maxFieldLen)
	}
	if len(m.Keys) > maxFieldLen || len(m.Properties) > maxFieldLen {
		return 0, fmt.Errorf("%w: %d keys and %d properties, limit %d each", ErrMessageTooLarge, len(m.Keys), len(m.Properties), maxFieldLen)
	}
	n := 2 + len(m.Subject) + 2 + 2 + 4 + len(m.Body)
	for _, k := range m.Keys {
		if len(k) > maxFieldLen {
			return 0, fmt.Errorf("%w: key of %d bytes, limit %d", ErrMessageTooLarge, len(k), maxFieldLen)
		}
		n += 2 + len(k)
	}
	for _, kv := range m.Properties {
		k, v := kv.Name, kv.Value
		if len(k) > maxFieldLen || len(v) > maxFieldLen {
			return 0, fmt.Errorf("%w: property %.32q of %d+%d bytes, limit %d each", ErrMessageTooLarge, k, len(k), len(v), maxFieldLen)
		}
		n += 4 + len(k) + len(v)
	}
	if n > maxMessage {
		return 0, fmt.Errorf("%w: message of %d bytes (body, subject, keys and properties) is over max-message-size %d",
			ErrMessageTooLarge, n, maxMessage)
	}
	return fixedSize + 1 + len(m.Topic) + n, nil
}

// encode writes m's record into dst, which is exactly its encoded size. The
// store-assigned fields (QueueOffset, LogOffset, StoreTime) are taken from m.
func (m *Message) encode(dst []byte) {
	be := binary.BigEndian
	be.PutUint32(dst[0:], uint32(len(dst)))
	be.PutUint32(dst[4:], recordMagic)
	be.PutUint32(dst[12:], m.Flags)
	be.PutUint32(dst[16:], uint32(m.QueueID))
	be.PutUint64(dst[20:], uint64(m.QueueOffset))
	be.PutUint64(dst[28:], uint64(m.LogOffset))
	be.PutUint64(dst[36:], uint64(m.BornTime))
	be.PutUint64(dst[44:], uint64(m.StoreTime))
	be.PutUint64(dst[52:], uint64(m.DeliverAt))
	be.PutUint32(dst[60:], uint32(m.ReconsumeTimes))
	be.PutUint32(dst[64:], SubjectHash(m.Subject))
	dst[68] = byte(len(m.Topic))
	p := 69 + copy(dst[69:], m.Topic)
	be.PutUint16(dst[p:], uint16(len(m.Subject)))
	p += 2 + copy(dst[p+2:], m.Subject)
	be.PutUint16(dst[p:], uint16(len(m.Keys)))
	p += 2
	for _, k := range m.Keys {
		be.PutUint16(dst[p:], uint16(len(k)))
		p += 2 + copy(dst[p+2:], k)
	}
	be.PutUint16(dst[p:], uint16(len(m.Properties)))
	p += 2
	for _, kv := range m.Properties {
		be.PutUint16(dst[p:], uint16(len(kv.Name)))
		p += 2 + copy(dst[p+2:], kv.Name)
		be.PutUint16(dst[p:], uint16(len(kv.Value)))
		p += 2 + copy(dst[p+2:], kv.Value)
	}
	be.PutUint32(dst[p:], uint32(len(m.Body)))
	copy(dst[p+4:], m.Body)
	be.PutUint32(dst[8:], crc32.Checksum(dst[12:], castagnoli))
}

// putBlank writes the header of a blank record of size bytes, which fills the
// unused end of a segment. dst must be at least headerSize long.
func putBlank(dst []byte, size int) {
	binary.BigEndian.PutUint32(dst[0:], uint32(size))
	binary.BigEndian.PutUint32(dst[4:], blankMagic)
	binary.BigEndian.PutUint32(dst[8:], 0)
}

// frameKind is what a reader finds at a position in a segment.
type frameKind int

const (
	frameRecord frameKind = iota // a whole record whose checksum holds
	frameBlank                   // a blank record: the segment ends here
	frameEnd                     // zeros: nothing was written from here on
	frameBad                     // anything else: torn or corrupt
)

// frame checks the record at the start of b, which holds the readable bytes
// of a segment from there on; toEnd is the distance to the segment's end
// (len(b) or more). It trusts no length it reads: a size is checked against
// limit and len(b) before use. On frameRecord and frameBlank it returns the
// record's size; on frameBad, a reason.
func frame(b []byte, toEnd, limit int) (frameKind, int, string) {
	if len(b) < headerSize {
		if allZero(b) {
			return frameEnd, 0, ""
		}
		return frameBad, 0, fmt.Sprintf("%d trailing bytes, less than a record header", len(b))
	}
	be := binary.BigEndian
	size := int(be.Uint32(b))
	switch magic := be.Uint32(b[4:]); {
	case size == 0 && magic == 0:
		return frameEnd, 0, ""
	case magic == blankMagic:
		if size != toEnd {
			return frameBad, 0, fmt.Sprintf("blank record of %d bytes does not reach the segment end (%d bytes on)", size, toEnd)
		}
		return frameBlank, size, ""
	case magic != recordMagic:
		return frameBad, 0, fmt.Sprintf("bad magic %#08x (size field %d)", magic, size)
	}
	if size < minRecordSize || size > limit {
		return frameBad, 0, fmt.Sprintf("record size %d outside [%d, %d]", size, minRecordSize, limit)
	}
	if size > len(b) {
		return frameBad, 0, fmt.Sprintf("record of %d bytes runs past the written end (%d bytes on)", size, len(b))
	}
	if got, want := crc32.Checksum(b[12:size], castagnoli), be.Uint32(b[8:]); got != want {
		return frameBad, 0, fmt.Sprintf("checksum %#08x, record says %#08x", got, want)
	}
	return frameRecord, size, ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeRecord parses one whole record whose frame (size, magic, checksum)
// was already checked, into m. rec must be a private copy: m's strings and
// body point into it. Every length is checked against what remains. m's
// keys and properties are taken from slab, which a read shares among its
// messages (one allocation for many), when it is not nil.
func decodeRecord(rec []byte, m *Message, slab *slabs) error {
	be := binary.BigEndian
	if len(rec) < minRecordSize {
		return fmt.Errorf("%w: record of %d bytes is shorter than the minimum %d", ErrCorrupt, len(rec), minRecordSize)
	}
	m.Flags = be.Uint32(rec[12:])
	m.QueueID = int(be.Uint32(rec[16:]))
	m.QueueOffset = int64(be.Uint64(rec[20:]))
	m.LogOffset = int64(be.Uint64(rec[28:]))
	m.BornTime = int64(be.Uint64(rec[36:]))
	m.StoreTime = int64(be.Uint64(rec[44:]))
	m.DeliverAt = int64(be.Uint64(rec[52:]))
	m.ReconsumeTimes = int32(be.Uint32(rec[60:]))
	m.Size = len(rec)
	var keys *[]string
	var props *[]Property
	if slab != nil {
		keys, props = &slab.keys, &slab.props
	}
	r := reader{b: rec, p: fixedSize}
	m.Topic = r.str(int(r.u8()))
	m.Subject = r.str(int(r.u16()))
	if n := int(r.u16()); n > 0 && r.ok() {
		if n > (len(rec)-r.p)/2 {
			return fmt.Errorf("%w: %d keys cannot fit in %d bytes", ErrCorrupt, n, len(rec)-r.p)
		}
		m.Keys = carve(keys, n, slab.chunk(n, keySlab))
		for i := range m.Keys {
			m.Keys[i] = r.str(int(r.u16()))
		}
	} else {
		m.Keys = nil
	}
	if n := int(r.u16()); n > 0 && r.ok() {
		if n > (len(rec)-r.p)/4 {
			return fmt.Errorf("%w: %d properties cannot fit in %d bytes", ErrCorrupt, n, len(rec)-r.p)
		}
		m.Properties = carve(props, n, slab.chunk(n, propSlab))
		for i := 0; i < n && r.ok(); i++ {
			k := r.str(int(r.u16()))
			m.Properties[i] = Property{k, r.str(int(r.u16()))}
		}
	} else {
		m.Properties = nil
	}
	m.Body = r.bytes(int(r.u32()))
	if r.err != "" {
		return fmt.Errorf("%w: %s", ErrCorrupt, r.err)
	}
	if r.p != len(rec) {
		return fmt.Errorf("%w: %d bytes after the body", ErrCorrupt, len(rec)-r.p)
	}
	if m.QueueID > maxQueueID || m.QueueOffset < 0 || m.LogOffset < 0 {
		return fmt.Errorf("%w: queue id %d, queue offset %d, log offset %d", ErrCorrupt, m.QueueID, m.QueueOffset, m.LogOffset)
	}
	return nil
}

// slabs are the memory a read's messages take their keys and properties
// from.
type slabs struct {
	keys  []string
	props []Property
	// left is how many messages the read may still decode, this one
	// included: a slab is sized for them, not for a full read, so that a
	// read of one message (a subscriber at the head of its queue) does
	// not allocate and zero room for a hundred.
	left int
}

// chunk is the size of a new slab for a message with n of one kind, at
// most full: room for as many for each message left.
func (sl *slabs) chunk(n, full int) int {
	if sl == nil || sl.left <= 0 {
		return full
	}
	return min(full, n*sl.left)
}

// carve returns n elements of *slab, which it replaces by a new slab of
// at least chunk when it has not room; of their own when slab is nil.
func carve[T any](slab *[]T, n, chunk int) []T {
	if slab == nil {
		return make([]T, n)
	}
	s := *slab
	if cap(s)-len(s) < n {
		s = make([]T, 0, max(n, chunk))
	}
	k := len(s)
	*slab = s[:k+n]
	return s[k : k+n : k+n]
}

// How many keys and properties a read's slabs make room for at once.
const (
	keySlab  = 64
	propSlab = 128
)

// reader reads length-prefixed fields and remembers the first overrun.
type reader struct {
	b   []byte
	p   int
	err string
}

func (r *reader) ok() bool { return r.err == "" }

func (r *reader) need(n int, what string) bool {
	if r.err != "" {
		return false
	}
	if n < 0 || n > len(r.b)-r.p {
		r.err = fmt.Sprintf("%s of %d bytes at byte %d runs past the record end (%d)", what, n, r.p, len(r.b))
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1, "length") {
		return 0
	}
	r.p++
	return r.b[r.p-1]
}

func (r *reader) u16() uint16 {
	if !r.need(2, "length") {
		return 0
	}
	r.p += 2
	return binary.BigEndian.Uint16(r.b[r.p-2:])
}

func (r *reader) u32() uint32 {
	if !r.need(4, "length") {
		return 0
	}
	r.p += 4
	return binary.BigEndian.Uint32(r.b[r.p-4:])
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n, "field") {
		return nil
	}
	r.p += n
	return r.b[r.p-n : r.p : r.p]
}

// str returns a string sharing the record's private copy: no allocation.
// Safe because nothing writes to that copy after decoding, and the body is a
// disjoint part of it.
func (r *reader) str(n int) string {
	b := r.bytes(n)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// MessageID is the id of the record at logOffset in the log with logID: 32
// hex digits, the log id then the offset. A message id never changes, and a
// replica that copies the log byte for byte gives the same ids.
func MessageID(logID uint64, logOffset int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], logID)
	binary.BigEndian.PutUint64(b[8:], uint64(logOffset))
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:]) // one allocation, the string's
}

// ParseMessageID splits a message id into its log id and log offset.
func ParseMessageID(id string) (logID uint64, logOffset int64, err error) {
	var b [16]byte
	if len(id) != 32 {
		return 0, 0, fmt.Errorf("%w: message id %q is not 32 hex digits", ErrNotFound, id)
	}
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return 0, 0, fmt.Errorf("%w: message id %q: %v", ErrNotFound, id, err)
	}
	off := int64(binary.BigEndian.Uint64(b[8:]))
	if off < 0 {
		return 0, 0, fmt.Errorf("%w: message id %q has a negative offset", ErrNotFound, id)
	}
	return binary.BigEndian.Uint64(b[:8]), off, nil
}
