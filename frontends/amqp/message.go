package amqp

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/ferrymq/ferry/core"
)

// Properties of a stored message that carry AMQP's.
const (
	// PropProperties keeps the content header's properties as sent
	// (base64 of the flags and list), so that an AMQP consumer gets them
	// back as they were, typed headers included.
	PropProperties = "AMQP_PROPERTIES"
	// propContentType is the content type as MQTT 5 keeps it, so that
	// MQTT consumers see an AMQP message's content type and back.
	propContentType = "MQTT_CONTENT_TYPE"
)

// maxField is the longest property name or value the store keeps.
const maxField = 65535

// toCore builds the core message of an AMQP publish: string headers
// become properties (MQTT and native consumers see them), and the whole
// property list is kept for AMQP consumers.
func toCore(topic, subject string, h *header, body []byte) *core.Message {
	m := &core.Message{Topic: topic, Subject: subject, Body: body, Properties: make(core.Properties, 0, len(h.props.Headers)+2)}
	for k, v := range h.props.Headers {
		if s, ok := headerString(v); ok && len(k) <= maxField && len(s) <= maxField {
			m.Properties = append(m.Properties, core.Property{Name: k, Value: s}) // a table's names are distinct
		}
	}
	if h.props.ContentType != "" {
		m.Properties.Set(propContentType, h.props.ContentType)
	}
	if len(h.raw) > 2 || len(h.raw) == 2 && (h.raw[0] != 0 || h.raw[1] != 0) {
		m.Properties.Set(PropProperties, base64.StdEncoding.EncodeToString(h.raw))
	}
	if !h.props.Timestamp.IsZero() {
		m.BornTime = h.props.Timestamp.UnixNano()
	} else {
		m.BornTime = time.Now().UnixNano()
	}
	return m
}

// appendRawProperties appends the property flags and list an AMQP consumer
// gets for m: those it was published with over AMQP, else its properties
// as string headers (a message of MQTT or of a native producer).
func appendRawProperties(dst []byte, m *core.Message) []byte {
	if s, ok := m.Properties.Lookup(PropProperties); ok {
		if out, err := base64.StdEncoding.AppendDecode(dst, []byte(s)); err == nil {
			return out
		}
	}
	p := properties{DeliveryMode: 2, ContentType: m.Properties.Get(propContentType)}
	if m.BornTime > 0 {
		p.Timestamp = time.Unix(0, m.BornTime)
	}
	if len(m.Properties) > 0 {
		p.Headers = make(Table, len(m.Properties))
		for k, v := range m.Properties.All() {
			if k != propContentType {
				p.Headers[k] = v
			}
		}
	}
	return appendProperties(dst, &p)
}

// headerString is a header value's string form; tables, arrays and voids
// have none.
func headerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	case int8, uint8, int16, uint16, int32, uint32, int64, int, float32, float64:
		return fmt.Sprint(v), true
	case Decimal:
		return fmt.Sprintf("%de-%d", v.Value, v.Scale), true
	case time.Time:
		return v.UTC().Format(time.RFC3339), true
	}
	return "", false
}

// deadLetter publishes a discarded message of queue to exchange dlx with
// key, with RabbitMQ's x-first-death headers saying why [RabbitMQ
// dead-lettering].
func (s *Server) deadLetter(m *core.Message, queue, dlx, exchange, key, reason string) error {
	x, err := s.vhost.exchange(dlx)
	if err != nil {
		return err
	}
	topic, subject, ok := route_(x, key)
	if !ok {
		return nil // unroutable: dropped, as RabbitMQ drops it
	}
	h := header{}
	if raw, err := base64.StdEncoding.DecodeString(m.Properties.Get(PropProperties)); err == nil && len(raw) >= 2 {
		d := decoder{b: raw}
		h.props = decodeProperties(&d)
	}
	if h.props.Headers == nil {
		h.props.Headers = Table{}
	}
	if _, ok := h.props.Headers["x-first-death-reason"]; !ok {
		h.props.Headers["x-first-death-reason"] = reason
		h.props.Headers["x-first-death-queue"] = queue
		h.props.Headers["x-first-death-exchange"] = exchange
	}
	h.raw = appendProperties(nil, &h.props)
	dm := toCore(topic, subject, &h, m.Body)
	props := make(core.Properties, 0, len(m.Properties)+len(dm.Properties))
	for _, p := range m.Properties {
		if p.Name != PropProperties {
			props = append(props, p)
		}
	}
	props = append(props, dm.Properties...) // last: its values win
	props.Dedup()
	dm.Properties = props
	_, err = s.broker.Publish(context.Background(), dm, core.PublishOptions{Queue: core.QueueAuto})
	s.lastPublish.Store(time.Now().UnixNano())
	return err
}
