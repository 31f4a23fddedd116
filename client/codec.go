package client

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ferrymq/ferry/remoting"
)

// errMalformed: a pull response body that does not decode.
var errMalformed = errors.New("client: malformed message in a pull response")

// RocketMQ's stored-message layout (its MessageDecoder), which a pull
// response's body is a sequence of, all big-endian:
//
//	totalSize u32 · magic u32 · bodyCRC u32 · queueId u32 · flag u32 ·
//	queueOffset u64 · physicalOffset u64 · sysFlag u32 · bornTimestamp u64 ·
//	bornHost (4+4, or 16+4 for IPv6) · storeTimestamp u64 ·
//	storeHost (4+4, or 16+4) · reconsumeTimes u32 · preparedTxOffset u64 ·
//	bodyLength u32 · body · topicLength (u8; u16 with magic v2) · topic ·
//	propertiesLength u16 · properties
const (
	magicV1 = 0xdaa320a7
	magicV2 = 0xdaa320ab

	sysCompressed  = 1 << 0
	sysBornHostV6  = 1 << 4
	sysStoreHostV6 = 1 << 5

	// minStored is the smallest record: IPv4 hosts, empty body, topic and
	// properties.
	minStored = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2
	// maxInflated caps a compressed body once inflated.
	maxInflated = 64 << 20
)

// decodeMessages decodes a pull response's body. It trusts no length it
// reads: each is checked against what remains before use, and every
// record must end exactly where its size says.
//
// A response of small messages is copied once, and its messages' bodies
// and strings are slices of that copy: a message kept alive keeps the
// copy (at most maxSharedResponse bytes) alive. Larger responses give each
// body memory of its own.
func decodeMessages(b []byte) ([]*MessageExt, error) { return decodeRecords(b, false) }

// decodeResponse decodes the messages of resp, a pull response read off a
// connection, whose body is its own memory: one of at most
// maxSharedResponse bytes is not copied, its messages are slices of it
// (the copy decodeMessages would make costs as much as the rest of the
// decoding for 4 KiB messages). A larger one's frame memory is released
// for the next frame once its messages are copied out.
func decodeResponse(resp *remoting.Command) ([]*MessageExt, error) {
	if len(resp.Body) <= maxSharedResponse {
		return decodeRecords(resp.Body, true)
	}
	msgs, err := decodeRecords(resp.Body, false)
	resp.Release()
	return msgs, err
}

// decodeRecords is decodeMessages; with owned, b is the caller's to give:
// when it is small enough to be shared, it is not copied.
func decodeRecords(b []byte, owned bool) ([]*MessageExt, error) {
	n := 0 // frame the records first, so that what they need is made once
	for rest := b; len(rest) > 0; n++ {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(rest))
		}
		size := binary.BigEndian.Uint32(rest)
		if size < minStored || uint64(size) > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: record of %d bytes, %d remain", errMalformed, size, len(rest))
		}
		rest = rest[size:]
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]*MessageExt, n)
	var d recordDecoder
	var structs []MessageExt
	if len(b) <= maxSharedResponse {
		if !owned {
			b = bytes.Clone(b)
		}
		d.shared = true
		structs = make([]MessageExt, n)
		d.ids = make([]byte, 0, 32*n) // an IPv4 store host's ids; IPv6 ones grow it
	}
	for i := range out {
		size := binary.BigEndian.Uint32(b)
		var m *MessageExt
		if structs != nil {
			m = &structs[i]
		} else {
			m = new(MessageExt)
		}
		if err := d.decodeInto(b[:size], m); err != nil {
			return nil, err
		}
		out[i] = m
		b = b[size:]
	}
	return out, nil
}

// reader reads big-endian fields, failing once anything is short.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: field of %d bytes, %d remain in the record", errMalformed, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) host(v6 bool) string {
	n := uint64(4)
	if v6 {
		n = 16
	}
	ip := r.take(n)
	port := r.u32()
	if r.err != nil {
		return ""
	}
	return net.JoinHostPort(net.IP(ip).String(), strconv.FormatUint(uint64(port), 10))
}

// skipHost steps over a host field.
func (r *reader) skipHost(v6 bool) {
	if v6 {
		r.take(16 + 4)
	} else {
		r.take(4 + 4)
	}
}

// recordDecoder decodes the records of one pull response. Their topic and
// store host are most often the same from one record to the next: it
// keeps the last strings made of them, so that each is made once.
type recordDecoder struct {
	topicRaw, hostRaw []byte
	topic, host       string
	// shared: the records are the decoder's own copy, which bodies and
	// strings may share (decodeMessages).
	shared bool
	ids    []byte // room for message ids, which strings share
}

// maxSharedResponse is the largest pull response whose messages share one
// copy of it.
const maxSharedResponse = 256 << 10

// str is b as a string: sharing b's memory when the records are the
// decoder's own, which nothing writes after decoding (bodies are
// disjoint slices of it, their capacity capped at their length).
func (d *recordDecoder) str(b []byte) string {
	if !d.shared || len(b) == 0 {
		return string(b)
	}
	return unsafe.String(&b[0], len(b))
}

// hexID is b in upper-case hex, written into the decoder's id memory when it
// has room: many messages' ids in one allocation.
func (d *recordDecoder) hexID(b []byte) string {
	n := 2 * len(b)
	if cap(d.ids)-len(d.ids) < n {
		d.ids = make([]byte, 0, max(4096, n))
	}
	at := len(d.ids)
	d.ids = appendUpperHex(d.ids, b)
	return unsafe.String(&d.ids[at], n)
}

// decodeInto decodes one record into m.
func (d *recordDecoder) decodeInto(rec []byte, m *MessageExt) error {
	r := &reader{b: rec[4:]} // the size was checked by the caller
	magic := r.u32()
	if r.err == nil && magic != magicV1 && magic != magicV2 {
		return fmt.Errorf("%w: magic code %#x", errMalformed, magic)
	}
	bodyCRC := r.u32()
	m.QueueID = int(int32(r.u32()))
	r.u32() // flag: not part of Message
	m.QueueOffset = int64(r.u64())
	m.LogOffset = int64(r.u64())
	sysFlag := r.u32()
	m.BornTime = time.UnixMilli(int64(r.u64()))
	r.skipHost(sysFlag&sysBornHostV6 != 0)
	m.StoreTime = time.UnixMilli(int64(r.u64()))
	storeHostAt := len(rec) - len(r.b)
	r.skipHost(sysFlag&sysStoreHostV6 != 0)
	storeHost := rec[storeHostAt : len(rec)-len(r.b)]
	m.ReconsumeTimes = int(int32(r.u32()))
	r.u64() // prepared transaction offset
	body := r.take(uint64(r.u32()))
	var topicLen uint64
	if magic == magicV2 {
		topicLen = uint64(r.u16())
	} else {
		topicLen = uint64(r.u8())
	}
	topic := r.take(topicLen)
	props := r.take(uint64(r.u16()))
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the fields of a record of %d", errMalformed, len(r.b), len(rec))
	}
	if m.QueueID < 0 || m.QueueOffset < 0 || m.LogOffset < 0 || m.ReconsumeTimes < 0 {
		return fmt.Errorf("%w: negative queue id, offset or reconsume count", errMalformed)
	}
	if len(topic) == 0 {
		return fmt.Errorf("%w: record without a topic", errMalformed)
	}
	if crc32.ChecksumIEEE(body) != bodyCRC {
		return fmt.Errorf("%w: body checksum mismatch at queue offset %d", errMalformed, m.QueueOffset)
	}
	if sysFlag&sysCompressed != 0 {
		var err error
		if body, err = inflate(body); err != nil {
			return err
		}
	} else if d.shared {
		body = body[:len(body):len(body)] // an append must not run into the next record
	} else {
		body = bytes.Clone(body) // do not keep the whole response alive
	}
	m.Body = body
	if d.topicRaw == nil || !bytes.Equal(topic, d.topicRaw) {
		d.topicRaw, d.topic = topic, d.str(topic)
	}
	m.Topic = d.topic
	if d.hostRaw == nil || !bytes.Equal(storeHost, d.hostRaw) {
		hr := reader{b: storeHost}
		d.hostRaw, d.host = storeHost, hr.host(sysFlag&sysStoreHostV6 != 0)
	}
	m.StoreHost = d.host
	m.setProperties(d.str(props), storeHost, d)
	return nil
}

// setProperties spreads the wire properties ("name\x01value\x02…") onto
// m's fields: the tag, the keys, the id, the original topic of a retried
// message; the rest stay in Properties, which is made only when there are
// any. Pairs without a name are dropped; of a name given twice, the last
// counts.
func (m *MessageExt) setProperties(props string, storeHost []byte, d *recordDecoder) {
	var uniq, retryTopic string
	for len(props) > 0 {
		var kv string
		kv, props, _ = strings.Cut(props, "\x02")
		k, v, ok := strings.Cut(kv, "\x01")
		if !ok || k == "" {
			continue
		}
		switch k {
		case propTags:
			m.Tag = v
			continue
		case propKeys:
			m.Keys = strings.Fields(v)
			continue
		case propUniqKey:
			uniq = v
			continue
		case propRetryTopic:
			retryTopic = v
		}
		if m.Properties == nil {
			m.Properties = make(map[string]string, strings.Count(props, "\x02")+1)
		}
		m.Properties[k] = v
	}
	if m.Keys == nil {
		m.Keys = []string{}
	}
	// RocketMQ's offset message id: the store host and the log offset, in
	// upper-case hex.
	var b [28]byte
	n := copy(b[:], storeHost)
	binary.BigEndian.PutUint64(b[n:], uint64(m.LogOffset))
	m.OffsetMsgID = d.hexID(b[:n+8])
	m.ID = m.OffsetMsgID
	if uniq != "" {
		m.ID = uniq
	}
	if retryTopic != "" && strings.HasPrefix(m.Topic, retryPrefix) {
		m.Topic = retryTopic
	}
}

// upperHex is b (at most 32 bytes) in upper-case hex, made with one allocation.
func upperHex(b []byte) string {
	var out [64]byte
	return string(appendUpperHex(out[:0], b))
}

// appendUpperHex appends b in upper-case hex to dst.
func appendUpperHex(dst, b []byte) []byte {
	const digits = "0123456789ABCDEF"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}

// inflate undoes zlib compression, capped at maxInflated.
func inflate(b []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %v", errMalformed, err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %v", errMalformed, err)
	}
	if len(out) > maxInflated {
		return nil, fmt.Errorf("%w: compressed body inflates past %d bytes", errMalformed, maxInflated)
	}
	return out, nil
}

// appendBatchMessage appends one message of a SEND_BATCH_MESSAGE body:
// size u32, magic u32 (0), body CRC u32, flag u32, body length u32, body,
// properties length u16, properties.
func appendBatchMessage(dst, body []byte, props string) []byte {
	be := binary.BigEndian
	dst = be.AppendUint32(dst, uint32(20+len(body)+2+len(props)))
	dst = be.AppendUint32(dst, 0)
	dst = be.AppendUint32(dst, crc32.ChecksumIEEE(body))
	dst = be.AppendUint32(dst, 0)
	dst = be.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, body...)
	dst = be.AppendUint16(dst, uint16(len(props)))
	return append(dst, props...)
}
