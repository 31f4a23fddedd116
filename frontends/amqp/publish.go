package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
)

// header handles the content header of the publish being read.
func (ch *channel) header(p []byte) error {
	if ch.pending == nil || ch.pending.hdr != nil {
		return connErr(codeUnexpectedFrame, fmt.Sprintf("content header on channel %d without basic.publish", ch.id))
	}
	h, err := decodeHeader(p)
	if err != nil {
		return err
	}
	if h.class != 60 {
		return connErr(codeFrameError, fmt.Sprintf("content header of class %d, want 60 (basic)", h.class))
	}
	if max := uint64(ch.c.s.cfg.MaxMessageSize); h.bodySize > max {
		ch.c.s.metrics.limits.WithLabelValues("amqp.max-message-size").Inc()
		return chanErr(codePreconditionFail, fmt.Sprintf("message size %d is larger than the maximum %d (amqp.max-message-size)", h.bodySize, max)).on(mBasicPublish)
	}
	ch.pending.hdr = &h
	if h.bodySize == 0 {
		return ch.published()
	}
	ch.pending.body = make([]byte, 0, h.bodySize)
	return nil
}

// body handles a body frame of the publish being read.
func (ch *channel) body(p []byte) error {
	pub := ch.pending
	if pub == nil || pub.hdr == nil {
		return connErr(codeUnexpectedFrame, fmt.Sprintf("content body on channel %d without a content header", ch.id))
	}
	if uint64(len(pub.body)+len(p)) > pub.hdr.bodySize {
		return connErr(codeFrameError, fmt.Sprintf("content body of more than the %d bytes its header said", pub.hdr.bodySize))
	}
	pub.body = append(pub.body, p...)
	if uint64(len(pub.body)) == pub.hdr.bodySize {
		return ch.published()
	}
	return nil
}

// published handles a publish whose content is complete.
func (ch *channel) published() error {
	pub := ch.pending
	ch.pending = nil
	ch.mu.Lock()
	var seq uint64
	if ch.confirm {
		ch.pubSeq++
		seq = ch.pubSeq
	}
	confirms := ch.confirms
	ch.mu.Unlock()
	ch.c.s.metrics.published.Inc()

	topic, subject, routable := route_(pub.x, pub.key)
	if routable {
		if g := ch.c.s.cfg.Guard; g != nil && !g.Allow(ch.c.user, ch.c.clientID, auth.Write, aclTopic(topic, subject)) {
			ch.c.s.metrics.refused.WithLabelValues("write").Inc()
			return chanErr(codeAccessRefused, fmt.Sprintf("write access to topic '%s' refused for user '%s'", aclTopic(topic, subject), ch.c.user)).on(mBasicPublish)
		}
	}
	headers := func(k string) (string, bool) {
		v, ok := pub.hdr.props.Headers[k]
		if !ok {
			return "", false
		}
		return headerString(v)
	}
	if !routable || pub.mandatory && !ch.c.s.vhost.routed(pub.x, pub.key, headers) {
		if pub.mandatory {
			// [spec basic.return] then, in confirm mode, the ack.
			b := appendMethodFrame(nil, ch.id, mBasicReturn, uint16(codeNoRoute), "NO_ROUTE", pub.x.name, pub.key)
			b = appendFrame(b, frameHeader, ch.id, appendHeader(nil, uint64(len(pub.body)), pub.hdr.raw))
			ch.c.send(appendBody(b, ch.id, pub.body, ch.c.frameMax))
			ch.c.s.metrics.returned.Inc()
		}
		if confirms != nil {
			confirms <- confirmReq{seq: seq}
		}
		return nil
	}
	m := toCore(topic, subject, pub.hdr, pub.body)
	if ch.tx {
		if ch.txBytes+len(pub.body) > ch.c.s.cfg.MaxTxBytes {
			ch.c.s.metrics.limits.WithLabelValues("amqp.max-tx-bytes").Inc()
			return chanErr(codePreconditionFail, fmt.Sprintf("transaction holds more than %d bytes of messages (amqp.max-tx-bytes): commit sooner", ch.c.s.cfg.MaxTxBytes)).on(mBasicPublish)
		}
		ch.txBytes += len(pub.body)
		ch.txOps = append(ch.txOps, txOp{run: func() error {
			_, err := ch.c.s.broker.Publish(context.Background(), m, core.PublishOptions{Queue: core.QueueAuto})
			ch.c.s.lastPublish.Store(time.Now().UnixNano())
			return publishErr(err)
		}})
		return nil
	}
	start := time.Now()
	res, err := ch.c.s.broker.Publish(context.Background(), m, core.PublishOptions{Queue: core.QueueAuto, NoWait: true})
	now := time.Now()
	ch.c.s.metrics.publishLatency.Observe(now.Sub(start).Seconds())
	ch.c.s.lastPublish.Store(now.UnixNano())
	if err != nil {
		ch.c.log.Warn("amqp: publish failed", "topic", topic, "err", err)
	}
	ch.c.s.blocked(err)
	if confirms != nil {
		confirms <- confirmReq{seq: seq, end: res.End, err: err}
	}
	return nil
}

// publishErr is the channel error of a failed transactional publish.
func publishErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, core.ErrMessageTooLarge), errors.Is(err, core.ErrInvalidMessage):
		return chanErr(codePreconditionFail, err.Error())
	}
	return chanErr(codeResourceLocked, err.Error())
}

// aclTopic is the MQTT-style path the ACL reads: topic/subject.
func aclTopic(topic, subject string) string {
	if subject == "" {
		return topic
	}
	return topic + "/" + subject
}

// confirmer confirms a confirm-mode channel's publishes in order, once
// each is durable under the flush policy [RabbitMQ publisher confirms]: a
// run of stored ones takes one wait and one basic.ack with multiple.
func (ch *channel) confirmer(reqs <-chan confirmReq) {
	defer ch.confirmWG.Done()
	batch := make([]confirmReq, 0, 256)
	for r := range reqs {
		batch = append(batch[:0], r)
	more:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		var end int64
		for _, r := range batch {
			if r.err == nil && r.end > end {
				end = r.end
			}
		}
		var durErr error
		if end > 0 {
			durErr = ch.c.s.broker.WaitDurable(context.Background(), end)
		}
		var b []byte
		for i := 0; i < len(batch); {
			r := batch[i]
			if r.err != nil || durErr != nil {
				b = appendMethodFrame(b, ch.id, mBasicNack, r.seq, false, false)
				i++
				continue
			}
			j := i
			for j+1 < len(batch) && batch[j+1].err == nil {
				j++
			}
			b = appendMethodFrame(b, ch.id, mBasicAck, batch[j].seq, j > i)
			i = j + 1
		}
		ch.c.send(b)
	}
}
