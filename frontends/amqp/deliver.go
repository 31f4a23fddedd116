package amqp

import (
	"encoding/binary"
	"slices"
	"sort"

	"github.com/ferrymq/ferry/core"
)

// unackedList is a channel's unacknowledged deliveries in tag order. Tags
// are given in increasing order, so the list stays sorted by appending:
// an ack with multiple takes a prefix, a single ack finds its tag by
// binary search, and clients mostly ack the oldest, which is the head.
type unackedList struct {
	us []*unacked
}

func (l *unackedList) len() int { return len(l.us) }

// push adds u, whose tag is above every tag in the list.
func (l *unackedList) push(u *unacked) { l.us = append(l.us, u) }

// takeThrough removes and returns the deliveries up to tag, in order; tag
// 0 takes them all [spec basic.ack: multiple with tag 0 is "all
// outstanding"]. The returned slice is the caller's: the list never
// writes before its head.
func (l *unackedList) takeThrough(tag uint64) []*unacked {
	n := len(l.us)
	if tag != 0 {
		n = sort.Search(len(l.us), func(i int) bool { return l.us[i].tag > tag })
	}
	us := l.us[:n:n]
	l.us = l.us[n:]
	if len(l.us) == 0 {
		l.us = nil
	}
	return us
}

// take removes and returns the delivery with tag, or nil.
func (l *unackedList) take(tag uint64) *unacked {
	i := sort.Search(len(l.us), func(i int) bool { return l.us[i].tag >= tag })
	if i == len(l.us) || l.us[i].tag != tag {
		return nil
	}
	u := l.us[i]
	if i == 0 {
		l.us[0] = nil
		l.us = l.us[1:]
	} else {
		l.us = slices.Delete(l.us, i, i+1)
	}
	return u
}

// takeAll removes and returns every delivery, in tag order.
func (l *unackedList) takeAll() []*unacked {
	return l.takeThrough(0)
}

// routed is a held delivery with the exchange and routing key it goes out
// with.
type routed struct {
	h        held
	exchange string
	key      string
}

// deliverBatch sends rs, in order, to consumer k with basic.deliver: one
// lock to give their tags, one buffer with all their frames, one hand-off
// to the connection's writer. It returns how many it sent, a prefix of rs
// bounded by k's room now (another queue may have taken the channel's
// shared prefetch since k was picked); the rest stay the queue's.
func (ch *channel) deliverBatch(k *consumer, q *queue, rs []routed) int {
	ch.sendMu.Lock()
	defer ch.sendMu.Unlock()
	ch.mu.Lock()
	n := min(len(rs), ch.roomLocked(k))
	if n <= 0 {
		ch.mu.Unlock()
		return 0
	}
	first := ch.nextTag + 1
	ch.nextTag += uint64(n)
	if !k.noAck {
		us := make([]unacked, n) // one allocation for the batch
		for i := range us {
			r := &rs[i]
			us[i] = unacked{tag: first + uint64(i), q: q, h: r.h, c: k, exchange: r.exchange, key: r.key}
			ch.unacked.push(&us[i])
		}
		k.unacked += n
	}
	ch.mu.Unlock()
	b := ch.c.buffer()
	for i := range rs[:n] {
		r := &rs[i]
		b = appendDeliver(b, ch.id, k.tag, first+uint64(i), r.h.redelivered, r.exchange, r.key)
		b = appendContent(b, ch.id, r.h.d, ch.c.frameMax)
	}
	ch.c.send(b)
	ch.c.s.metrics.delivered.Add(float64(n))
	if k.noAck {
		for i := range rs[:n] {
			q.ack(rs[i].h.d)
		}
	}
	return n
}

// buffer is an empty buffer for frames, one the writer is done with when
// it has one.
func (c *conn) buffer() []byte {
	select {
	case b := <-c.free:
		return b
	default:
		return make([]byte, 0, 4<<10)
	}
}

// maxKeptBuffer is the largest buffer the writer keeps for reuse: a batch
// of large messages is not worth holding on to.
const maxKeptBuffer = 1 << 20

// recycle gives b, written, back for reuse.
func (c *conn) recycle(b []byte) {
	if cap(b) > maxKeptBuffer {
		return
	}
	select {
	case c.free <- b[:0]:
	default:
	}
}

// appendDeliver appends a basic.deliver method frame [spec basic.deliver:
// consumer-tag, delivery-tag, redelivered, exchange, routing-key].
func appendDeliver(dst []byte, channel uint16, ctag string, tag uint64, redelivered bool, exchange, key string) []byte {
	at := len(dst)
	dst = append(dst, frameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	e := encoder{b: dst}
	e.short(mBasicDeliver.class())
	e.short(mBasicDeliver.method())
	e.shortstr(ctag)
	e.longlong(tag)
	if redelivered {
		e.octet(1)
	} else {
		e.octet(0)
	}
	e.shortstr(exchange)
	e.shortstr(key)
	return endFrame(e.b, at)
}

// appendContent appends the content header and body frames of d, the
// header's properties written in place: decoded from the message's
// AMQP_PROPERTIES, or made from its properties.
func appendContent(dst []byte, channel uint16, d *core.Delivery, frameMax uint32) []byte {
	at := len(dst)
	dst = append(dst, frameHeader, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, 60) // class basic
	dst = binary.BigEndian.AppendUint16(dst, 0)  // weight
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(d.Body)))
	dst = appendRawProperties(dst, d.Message)
	dst = endFrame(dst, at)
	return appendBody(dst, channel, d.Body, frameMax)
}

// appendBody appends body as content body frames of at most frameMax
// bytes each.
func appendBody(dst []byte, channel uint16, body []byte, frameMax uint32) []byte {
	max := int(frameMax - frameOverhead)
	for len(body) > 0 {
		n := min(len(body), max)
		dst = appendFrame(dst, frameBody, channel, body[:n])
		body = body[n:]
	}
	return dst
}

// appendMethodFrame appends a method frame of id with args, the payload
// written in place (no payload buffer of its own to copy from).
func appendMethodFrame(dst []byte, channel uint16, id methodID, args ...any) []byte {
	at := len(dst)
	dst = append(dst, frameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	return endFrame(appendMethod(dst, id, args...), at)
}

// endFrame sets the size of the frame that starts at at and closes it.
func endFrame(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at+3:], uint32(len(dst)-at-7))
	return append(dst, frameEnd)
}
