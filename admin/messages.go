package admin

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// maxBodyShown bounds the body a message view carries; a longer one is cut
// (BodyTruncated).
const maxBodyShown = 256 << 10

// Message is a stored message as the API shows it.
type Message struct {
	ID          string            `json:"id"`
	ProducerID  string            `json:"producerId,omitempty"` // the id its producer gave it (UNIQ_KEY), what RocketMQ's SDKs return
	OriginalID  string            `json:"originalId,omitempty"` // the id first published, for a retried or dead letter
	Topic       string            `json:"topic"`
	Queue       int               `json:"queue"`
	QueueOffset int64             `json:"queueOffset"`
	Subject     string            `json:"subject"`
	Keys        []string          `json:"keys"`
	Properties  map[string]string `json:"properties"`
	// Body is the body as text when it is valid UTF-8, else absent;
	// BodyHex is always there.
	Body          *string `json:"body,omitempty"`
	BodyHex       string  `json:"bodyHex"`
	BodySize      int     `json:"bodySize"`
	BodyTruncated bool    `json:"bodyTruncated,omitempty"`
	// DeliveryCount is the deliveries so far, this one included: the
	// retries the message came back through, plus one.
	DeliveryCount    int       `json:"deliveryCount"`
	BornTime         time.Time `json:"bornTime,omitzero"` // the producer's clock; absent when it sent none
	StoreTime        time.Time `json:"storeTime"`
	DeadLetterReason string    `json:"deadLetterReason,omitempty"`
}

func (s *Server) messageOf(m *core.Message) Message {
	out := Message{
		ID: s.b.MessageID(m.LogOffset), Topic: m.Topic, Queue: m.QueueID, QueueOffset: m.QueueOffset,
		Subject: m.Subject, Keys: m.Keys, Properties: m.Properties.Map(), BodySize: len(m.Body),
		DeliveryCount: int(m.ReconsumeTimes) + 1, DeadLetterReason: core.DeadLetterReason(m),
		StoreTime: time.Unix(0, m.StoreTime).UTC(),
	}
	out.ProducerID = m.Properties.Get(uniqKey)
	if out.ProducerID != "" { // indexed as a key for lookups, not one its producer gave
		out.Keys = make([]string, 0, len(m.Keys))
		for _, k := range m.Keys {
			if k != out.ProducerID {
				out.Keys = append(out.Keys, k)
			}
		}
	}
	if orig := s.b.OriginalID(m); orig != out.ID {
		out.OriginalID = orig
	}
	if m.BornTime != 0 {
		out.BornTime = time.Unix(0, m.BornTime).UTC()
	}
	if out.Keys == nil {
		out.Keys = []string{}
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	body := m.Body
	if len(body) > maxBodyShown {
		body, out.BodyTruncated = body[:maxBodyShown], true
	}
	out.BodyHex = hex.EncodeToString(body)
	if utf8.Valid(body) {
		text := string(body)
		out.Body = &text
	}
	return out
}

// Messages are a page of a queue's messages.
type Messages struct {
	Messages []Message `json:"messages"`
	// Hidden counts the messages read that the user may not see (the ACL
	// grants read on some subjects of the topic only).
	Hidden int   `json:"hidden"`
	Next   int64 `json:"next"`
	Min    int64 `json:"min"`
	Max    int64 `json:"max"`
}

// pageOf reads the offset and max query parameters.
func pageOf(r *http.Request) (offset int64, max int, err error) {
	q := r.URL.Query()
	max = 20
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want a number from 0", v)
		}
	}
	if v := q.Get("max"); v != "" {
		if max, err = strconv.Atoi(v); err != nil || max < 1 || max > core.MaxRead {
			return 0, 0, fmt.Errorf("max %q: want 1..%d", v, core.MaxRead)
		}
	}
	return offset, max, nil
}

// browse reads a queue from an offset.
func (s *Server) browse(w http.ResponseWriter, r *http.Request, user string) {
	topic := r.PathValue("topic")
	if !s.seesTopic(user, topic) {
		refused(w, user, "read topic "+topic, "no read rule of the ACL covers it")
		return
	}
	offset, max, err := pageOf(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	queue := 0
	if v := r.URL.Query().Get("queue"); v != "" {
		if queue, err = strconv.Atoi(v); err != nil || queue < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("queue %q: want a number from 0", v))
			return
		}
	}
	t, err := s.b.Topic(topic)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	if queue >= len(t.QueueStats) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("queue %d: topic %s has queues 0..%d", queue, topic, len(t.QueueStats)-1))
		return
	}
	res, err := s.b.Read(r.Context(), topic, queue, offset, core.ReadOptions{Max: max})
	if err != nil {
		writeCoreError(w, err)
		return
	}
	out := Messages{Messages: []Message{}, Next: res.Next, Min: res.Min, Max: res.Max}
	for i := range res.Messages {
		if m := &res.Messages[i]; s.readsMessage(user, m) {
			out.Messages = append(out.Messages, s.messageOf(m))
		} else {
			out.Hidden++
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// uniqKey is the property of the id a RocketMQ producer gives a message
// (its SendResult.MsgID), which the native front-end indexes as a key.
const uniqKey = "UNIQ_KEY"

// lookup finds a message by any of its ids: the broker's (what the core
// and the native protocol's SendResult.MsgID call the id when the producer
// gave none), the producer's (UNIQ_KEY: the newest message carrying it),
// or RocketMQ's offsetMsgId (taken for the log offset it holds).
func (s *Server) lookup(id string) (core.Message, error) {
	m, err := s.b.MessageByID(id)
	if !errors.Is(err, core.ErrNotFound) {
		return m, err
	}
	if found, kerr := s.b.MessagesByKey(id, 16); kerr == nil {
		for i := range found {
			if found[i].Properties.Get(uniqKey) == id {
				return found[i], nil
			}
		}
	}
	if _, off, perr := remoting.ParseOffsetMsgID(id); perr == nil {
		if m, aerr := s.b.MessageAt(off); aerr == nil {
			return m, nil
		}
	}
	return m, err
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	m, err := s.lookup(id)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	if !s.readsMessage(user, &m) {
		refused(w, user, "read message "+id, "no read rule of the ACL covers "+path(m.Topic, m.Subject))
		return
	}
	writeJSON(w, http.StatusOK, s.messageOf(&m))
}

// maxByKey bounds the messages a lookup by key returns.
const maxByKey = 64

// findByKey finds the newest messages carrying a key, of one topic when
// the topic parameter is given.
func (s *Server) findByKey(w http.ResponseWriter, r *http.Request, user string) {
	key, topic := r.URL.Query().Get("key"), r.URL.Query().Get("topic")
	if key == "" {
		writeError(w, http.StatusBadRequest, errors.New("key: a message key to look up is needed (?key=K[&topic=T])"))
		return
	}
	found, err := s.b.MessagesByKey(key, maxByKey*4)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	out := Messages{Messages: []Message{}}
	for i := range found {
		m := &found[i]
		switch {
		case topic != "" && m.Topic != topic:
		case !s.readsMessage(user, m):
			out.Hidden++
		case len(out.Messages) < maxByKey:
			out.Messages = append(out.Messages, s.messageOf(m))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// errorf is fmt.Errorf, for errors without a cause.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
