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

// toCore turns RocketMQ's message fields into a core message: TAGS is the
// subject, KEYS (space separated) and UNIQ_KEY the keys, the other
// properties stay.
func toCore(topic string, flag int32, props map[string]string, body []byte) *core.Message {
	m := &core.Message{Topic: topic, Body: body, Flags: uint32(flag), Properties: props}
	if props != nil {
		m.Subject = props[propTags]
		delete(props, propTags)
		if keys := indexUniqKey(props, strings.Fields(props[propKeys])); len(keys) > 0 {
			m.Keys = keys
		}
		delete(props, propKeys)
	}
	return m
}

// appendProperties appends the length and the RocketMQ properties of a
// core message, as a send gave them: the subject as TAGS, the keys (less
// the UNIQ_KEY a send indexed) as KEYS, the other properties; names
// sorted, as remoting.EncodeProperties orders them, so that equal
// messages encode alike. It builds no map and no string: a pull encodes
// every message it returns.
func appendProperties(dst []byte, m *core.Message) []byte {
	id := m.Properties[propUniqKey]
	kept := func(k string) bool { return id == "" || k != id } // unindexUniqKey's rule
	hasKeys := slices.ContainsFunc(m.Keys, kept)
	var stack [16]string
	names := stack[:0]
	for k := range m.Properties {
		names = append(names, k)
	}
	if _, ok := m.Properties[propTags]; !ok && m.Subject != "" {
		names = append(names, propTags)
	}
	if _, ok := m.Properties[propKeys]; !ok && hasKeys {
		names = append(names, propKeys)
	}
	slices.Sort(names)
	at := len(dst)
	dst = append(dst, 0, 0) // the length, set below
	for _, k := range names {
		dst = append(dst, k...)
		dst = append(dst, '\x01')
		switch {
		case k == propTags && m.Subject != "":
			dst = append(dst, m.Subject...)
		case k == propKeys && hasKeys:
			first := true
			for _, key := range m.Keys {
				if kept(key) {
					if !first {
						dst = append(dst, ' ')
					}
					dst, first = append(dst, key...), false
				}
			}
		default:
			dst = append(dst, m.Properties[k]...)
		}
		dst = append(dst, '\x02')
	}
	binary.BigEndian.PutUint16(dst[at:], uint16(len(dst)-at-2))
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
		out = append(out, toCore(topic, flag, remoting.DecodeProperties(string(m[22+blen:])), body))
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
	start := len(dst)
	be := binary.BigEndian
	dst = append(dst, 0, 0, 0, 0)          // the size, set once the properties are in
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
	dst = appendProperties(dst, m)
	be.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}
