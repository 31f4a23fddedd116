package client

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Message is a message to send.
type Message struct {
	Topic string
	// Tag is RocketMQ's tag, which is Ferry's subject: consumers filter on
	// it ("a || b", or MQTT-style wildcards such as "42/+").
	Tag string
	// Keys index the message for lookups. A key cannot contain a space.
	Keys []string
	// Properties are carried as they are. Names and values cannot contain
	// the bytes 0x01 and 0x02, which delimit them on the wire.
	Properties map[string]string
	Body       []byte
	// ShardingKey, when set, picks the queue by its hash, so that messages
	// with the same key go to the same queue and keep their order.
	ShardingKey string
	// DelayLevel (1..18, RocketMQ's levels: 1 s, 5 s, 10 s, 30 s, 1 min …
	// 2 h) delays delivery. Zero sends at once.
	DelayLevel int
	// DeliverAt, when set, delays delivery until then: any time, not a
	// level. It cannot be combined with DelayLevel.
	DeliverAt time.Time
}

// MessageExt is a received message. Its Body is the caller's to change
// and to append to (its capacity ends with it). Messages of one pull
// response of up to 256 KiB share one copy of that response (one
// allocation instead of four a message), so keeping one keeps the copy.
type MessageExt struct {
	Message
	// ID is the message's unique id: the one its producer gave it (the
	// UNIQ_KEY property; SendResult.MsgID), else the broker's. It stays the
	// same when a failed message is redelivered.
	ID string
	// OffsetMsgID is RocketMQ's offsetMsgId: the address of the broker
	// that stored the message and its commit-log offset there, which
	// Admin.ViewMessage takes (SendResult.OffsetMsgID, as the producer
	// got it).
	OffsetMsgID string
	QueueID     int
	QueueOffset int64
	// LogOffset is the message's position in the broker's commit log.
	LogOffset      int64
	BornTime       time.Time
	StoreTime      time.Time
	StoreHost      string // the broker's address, host:port
	ReconsumeTimes int    // deliveries before this one that failed
	Broker         string // the name of the broker it was pulled from
}

// SendResult says where a message was stored.
type SendResult struct {
	// MsgID is the message's unique id, which consumers see as
	// MessageExt.ID. For a batch, the ids of its messages joined by ",".
	MsgID string
	// OffsetMsgID is the broker's id of the stored message, RocketMQ's
	// offsetMsgId: the broker's address and the message's commit-log
	// offset (for a batch, the ids joined by ","). Admin.ViewMessage
	// takes it.
	OffsetMsgID string
	Topic       string
	Broker      string
	QueueID     int
	// QueueOffset is the message's offset in its queue (a batch's first
	// message's), or -1 for a delayed message, which is stored in its queue
	// only when it is due.
	QueueOffset int64
}

// Properties Ferry and RocketMQ give a meaning to.
const (
	propTags       = "TAGS"
	propKeys       = "KEYS"
	propDelay      = "DELAY"
	propUniqKey    = "UNIQ_KEY"
	propDeliverAt  = "__STARTDELIVERTIME" // unix milliseconds
	propRetryTopic = "RETRY_TOPIC"        // RocketMQ's: a retried message's topic
)

const (
	maxDelayLevel = 18
	maxTopicLen   = 127
	maxPropsLen   = 1<<16 - 1 // the u16 length of a batch message's properties
)

// validate checks what the SDK can check before a send.
func (m *Message) validate() error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if err := validTopic(m.Topic); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	if m.DelayLevel < 0 || m.DelayLevel > maxDelayLevel {
		return fmt.Errorf("%w: delay level %d: want 0..%d", ErrInvalidMessage, m.DelayLevel, maxDelayLevel)
	}
	if m.DelayLevel != 0 && !m.DeliverAt.IsZero() {
		return fmt.Errorf("%w: both a delay level and a delivery time", ErrInvalidMessage)
	}
	if strings.ContainsAny(m.Tag, "\x01\x02") {
		return fmt.Errorf("%w: tag %q contains a property delimiter", ErrInvalidMessage, m.Tag)
	}
	for _, k := range m.Keys {
		if k == "" || strings.ContainsAny(k, " \x01\x02") {
			return fmt.Errorf("%w: key %q: empty, or contains a space or a property delimiter", ErrInvalidMessage, k)
		}
	}
	for k, v := range m.Properties {
		if k == "" || strings.ContainsAny(k, "\x01\x02") || strings.ContainsAny(v, "\x01\x02") {
			return fmt.Errorf("%w: property %q: empty name, or a property delimiter in it", ErrInvalidMessage, k)
		}
	}
	return nil
}

// validTopic checks a topic name: letters, digits, '_', '-', '%', '|', at
// most 127 characters.
func validTopic(t string) error {
	if t == "" || len(t) > maxTopicLen {
		return fmt.Errorf("topic %q: want 1..%d characters", t, maxTopicLen)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '%' || c == '|') {
			return fmt.Errorf("topic %q: character %q not allowed", t, c)
		}
	}
	return nil
}

// delayed reports whether the broker will hold m back.
func (m *Message) delayed() bool {
	return m.DelayLevel > 0 || !m.DeliverAt.IsZero() && m.DeliverAt.After(time.Now()) // no clock read for most sends
}

// wireProperties is m's properties as sent: the user's, plus the tag, the
// keys, the delay and the unique id. uniq is kept if the user set one.
func (m *Message) wireProperties(uniq string) map[string]string {
	p := make(map[string]string, len(m.Properties)+4)
	for k, v := range m.Properties {
		p[k] = v
	}
	if m.Tag != "" {
		p[propTags] = m.Tag
	}
	if len(m.Keys) > 0 {
		p[propKeys] = strings.Join(m.Keys, " ")
	}
	if m.DelayLevel > 0 {
		p[propDelay] = strconv.Itoa(m.DelayLevel)
	}
	if !m.DeliverAt.IsZero() {
		p[propDeliverAt] = strconv.FormatInt(m.DeliverAt.UnixMilli(), 10)
	}
	if p[propUniqKey] == "" {
		p[propUniqKey] = uniq
	}
	return p
}

// encodeWireProperties is remoting.EncodeProperties(m.wireProperties(uniq))
// made without a map, the way every send goes: the same bytes, names
// sorted. It returns them and the message's unique id: a generated one is
// written into the properties in hex, and id is that part of them (one
// allocation for both).
func (m *Message) encodeWireProperties(uniq uniqID) (props, id string) {
	var room [6]prop
	own := room[:0]
	if m.Tag != "" {
		own = append(own, prop{propTags, m.Tag})
	}
	if len(m.Keys) > 0 {
		own = append(own, prop{propKeys, strings.Join(m.Keys, " ")})
	}
	if m.DelayLevel > 0 {
		own = append(own, prop{propDelay, strconv.Itoa(m.DelayLevel)})
	}
	if !m.DeliverAt.IsZero() {
		own = append(own, prop{propDeliverAt, strconv.FormatInt(m.DeliverAt.UnixMilli(), 10)})
	}
	gen := false
	if id = m.Properties[propUniqKey]; id == "" {
		gen = true
		own = append(own, prop{propUniqKey, ""}) // its value is uniq, written below
	}
	all := own
	for k, v := range m.Properties {
		if !slices.ContainsFunc(own, func(p prop) bool { return p.name == k }) {
			all = append(all, prop{k, v})
		}
	}
	slices.SortFunc(all, func(a, b prop) int { return strings.Compare(a.name, b.name) })
	n := 0
	for _, p := range all {
		n += len(p.name) + len(p.value) + 2
	}
	if gen {
		n += 2 * len(uniq)
	}
	var b strings.Builder
	b.Grow(n)
	at := -1
	for _, p := range all {
		b.WriteString(p.name)
		b.WriteByte('\x01')
		if gen && p.name == propUniqKey {
			var hex [2 * len(uniqID{})]byte
			at = b.Len()
			b.Write(appendUpperHex(hex[:0], uniq[:]))
		} else {
			b.WriteString(p.value)
		}
		b.WriteByte('\x02')
	}
	props = b.String()
	if at >= 0 {
		id = props[at : at+2*len(uniq)]
	}
	return props, id
}

// prop is one message property on its way to the wire.
type prop struct{ name, value string }

// msClock gives the current Unix millisecond as text, a send's born
// timestamp: one string a millisecond, shared by the sends within it,
// rather than one a send.
type msClock struct{ last atomic.Pointer[msText] }

type msText struct {
	ms   int64
	text string
}

func (c *msClock) now() string {
	ms := time.Now().UnixMilli()
	if t := c.last.Load(); t != nil && t.ms == ms {
		return t.text
	}
	t := &msText{ms, strconv.FormatInt(ms, 10)}
	c.last.Store(t) // racing sends of a new millisecond may each store one: any is right
	return t.text
}

// idGen makes unique message ids (RocketMQ's UNIQ_KEY): 32 upper-case hex
// digits, a random prefix per producer and a counter.
type idGen struct {
	prefix [8]byte
	n      atomic.Uint64
}

func newIDGen() *idGen {
	g := &idGen{}
	rand.Read(g.prefix[:]) // never fails (crypto/rand, Go 1.24+)
	return g
}

// uniqID is a message id before it is written in hex.
type uniqID [16]byte

func (g *idGen) nextID() uniqID {
	var b uniqID
	copy(b[:8], g.prefix[:])
	binary.BigEndian.PutUint64(b[8:], g.n.Add(1))
	return b
}

func (g *idGen) next() string {
	b := g.nextID()
	return upperHex(b[:])
}
