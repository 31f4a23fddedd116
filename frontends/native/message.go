package native

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// RocketMQ's properties that Ferry gives a meaning to.
const (
	propTags  = "TAGS"
	propKeys  = "KEYS"
	propDelay = "DELAY"
	// propDeliverAt delivers at any time: unix milliseconds (RocketMQ 5's
	// timer messages use the same property).
	propDeliverAt = "__STARTDELIVERTIME"
)

// RocketMQ's sysFlag bits.
const (
	sysCompressed = 1 << 0
	sysMultiTags  = 1 << 1
	sysBornHostV6 = 1 << 4
)

// maxBody caps a decompressed body: a small compressed body must not
// inflate past the store's limit.
const maxBody = 64 << 20

var errBadMessage = errors.New("native: malformed message")

// toCore turns RocketMQ's message fields into a core message, m: TAGS is
// the subject, KEYS (space separated) and UNIQ_KEY the keys, the other
// properties stay. keys is room for the keys (KEYS absent: the UNIQ_KEY
// alone), or nil.
func toCore(m *core.Message, keys []string, topic string, flag int32, props core.Properties, body []byte) *core.Message {
	*m = core.Message{Topic: topic, Body: body, Flags: uint32(flag), Properties: props}
	if props != nil {
		m.Subject = props.Get(propTags)
		if k := props.Get(propKeys); k != "" {
			keys = strings.Fields(k)
		}
		if keys = indexUniqKey(props, keys); len(keys) > 0 {
			m.Keys = keys
		}
		m.Properties.Del(propTags)
		m.Properties.Del(propKeys)
	}
	return m
}

// indexedOnly reports whether key k is the UNIQ_KEY id that indexUniqKey
// added, which KEYS leaves out on the way back out.
func indexedOnly(k, id string) bool { return id != "" && k == id }

// decodeProperties decodes RocketMQ's "name\x01value\x02…" into room
// (which may be nil) as remoting.DecodeProperties decodes it into a map:
// the names and values are slices of s, a name's last value counts, pairs
// without a name are dropped. It returns nil for "".
func decodeProperties(s string, room core.Properties) core.Properties {
	if s == "" {
		return nil
	}
	p := room[:0]
	if n := remoting.PropertiesSize(s); cap(p) < n {
		p = make(core.Properties, 0, n)
	}
	for s != "" {
		var k, v string
		if k, v, s = remoting.CutProperty(s); k != "" {
			p = append(p, core.Property{Name: k, Value: v})
		}
	}
	p.Dedup()
	return p
}

// appendProperties appends the RocketMQ properties of a core message to
// dst as remoting.EncodeProperties encodes them (names sorted): its own
// properties, TAGS its subject and KEYS its keys but the UNIQ_KEY that
// indexUniqKey added, each replacing a property of the same name. They
// are written in place: a map and a string of them would cost four
// allocations a delivered message.
func appendProperties(dst []byte, m *core.Message) []byte {
	id := m.Properties.Get(propUniqKey)
	hasKeys := false // a key other than the UNIQ_KEY indexUniqKey added
	for _, k := range m.Keys {
		if !indexedOnly(k, id) {
			hasKeys = true
			break
		}
	}
	type prop struct {
		name, value string
		keys        bool // the value is m.Keys
	}
	var arr [16]prop
	props := arr[:0]
	tags, keys := m.Subject != "", hasKeys
	for _, p := range m.Properties {
		k, v := p.Name, p.Value
		switch {
		case k == propTags && tags:
			v, tags = m.Subject, false
		case k == propKeys && keys:
			keys = false
			props = append(props, prop{name: k, keys: true})
			continue
		}
		props = append(props, prop{name: k, value: v})
	}
	if tags {
		props = append(props, prop{name: propTags, value: m.Subject})
	}
	if keys {
		props = append(props, prop{name: propKeys, keys: true})
	}
	slices.SortFunc(props, func(a, b prop) int { return strings.Compare(a.name, b.name) })
	for _, p := range props {
		dst = append(dst, p.name...)
		dst = append(dst, '\x01')
		if p.keys {
			sep := false
			for _, k := range m.Keys {
				if indexedOnly(k, id) {
					continue
				}
				if sep {
					dst = append(dst, ' ')
				}
				dst, sep = append(dst, k...), true
			}
		} else {
			dst = append(dst, p.value...)
		}
		dst = append(dst, '\x02')
	}
	return dst
}

// inflate undoes a producer's zlib compression, capped at maxBody.
func inflate(body []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %v", errBadMessage, err)
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: compressed body: %v", errBadMessage, err)
	}
	if len(out) > maxBody {
		return nil, fmt.Errorf("%w: compressed body inflates past %d bytes", errBadMessage, maxBody)
	}
	return out, nil
}

// decodeBatch splits a SEND_BATCH_MESSAGE body: each message is
// size u32, magic u32, body crc u32, flag u32, body (u32 length), properties
// (u16 length). Every length is checked against what remains.
func decodeBatch(topic string, b []byte) ([]*core.Message, error) {
	var out []*core.Message
	for len(b) > 0 {
		if len(b) < 20 {
			return nil, fmt.Errorf("%w: %d trailing bytes in a batch", errBadMessage, len(b))
		}
		size := int(binary.BigEndian.Uint32(b))
		if size < 22 || size > len(b) {
			return nil, fmt.Errorf("%w: batch message of %d bytes, %d remain", errBadMessage, size, len(b))
		}
		m := b[:size]
		b = b[size:]
		flag := int32(binary.BigEndian.Uint32(m[12:]))
		blen := int(binary.BigEndian.Uint32(m[16:]))
		if blen < 0 || 20+blen+2 > len(m) {
			return nil, fmt.Errorf("%w: body of %d bytes in a batch message of %d", errBadMessage, blen, len(m))
		}
		body := append([]byte(nil), m[20:20+blen]...)
		plen := int(binary.BigEndian.Uint16(m[20+blen:]))
		if 22+blen+plen != len(m) {
			return nil, fmt.Errorf("%w: properties of %d bytes in a batch message of %d", errBadMessage, plen, len(m))
		}
		out = append(out, toCore(new(core.Message), nil, topic, flag, decodeProperties(string(m[22+blen:]), nil), body))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: a batch of no message", errBadMessage)
	}
	return out, nil
}

// storedMessageSizeHint is about the bytes appendMessage takes for m,
// without walking its properties (a pull response's body grows if short).
func storedMessageSizeHint(m *core.Message) int {
	return 128 + len(m.Body) + len(m.Topic) + len(m.Subject) + 48*(len(m.Properties)+len(m.Keys))
}

// appendMessage appends m in RocketMQ's stored-message layout, which its
// clients decode from a pull response. storeHost is the broker's address.
func appendMessage(dst []byte, m *core.Message, storeHost [8]byte) []byte {
	be := binary.BigEndian
	start := len(dst)
	dst = be.AppendUint32(dst, 0)          // the size, once the properties are written
	dst = be.AppendUint32(dst, 0xdaa320a7) // MESSAGE_MAGIC_CODE
	dst = be.AppendUint32(dst, crc32.ChecksumIEEE(m.Body))
	dst = be.AppendUint32(dst, uint32(m.QueueID))
	dst = be.AppendUint32(dst, m.Flags)
	dst = be.AppendUint64(dst, uint64(m.QueueOffset))
	dst = be.AppendUint64(dst, uint64(m.LogOffset))
	dst = be.AppendUint32(dst, 0) // sysFlag: bodies are stored inflated, hosts IPv4
	dst = be.AppendUint64(dst, uint64(m.BornTime/1e6))
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // born host: not kept
	dst = be.AppendUint64(dst, uint64(m.StoreTime/1e6))
	dst = append(dst, storeHost[:]...)
	dst = be.AppendUint32(dst, uint32(m.ReconsumeTimes))
	dst = be.AppendUint64(dst, 0) // prepared transaction offset
	dst = be.AppendUint32(dst, uint32(len(m.Body)))
	dst = append(dst, m.Body...)
	dst = append(dst, byte(len(m.Topic)))
	dst = append(dst, m.Topic...)
	plen := len(dst)
	dst = be.AppendUint16(dst, 0) // the properties' length, once written
	dst = appendProperties(dst, m)
	be.PutUint16(dst[plen:], uint16(len(dst)-plen-2))
	be.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}
