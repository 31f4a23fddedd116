package rabbitmq

import (
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/internal/routingkey"
)

// Headers a bridge reads and writes besides the message's own properties.
const (
	// HeaderOrigin names the RabbitMQ a message first came in from; an
	// outbound bridge does not send it back there.
	HeaderOrigin = "x-ferry-origin"
	// HeaderHops counts the bridges a message crossed.
	HeaderHops = "x-ferry-hops"
	// HeaderSubject, HeaderKeys and HeaderTopic carry Ferry's subject, keys
	// and topic to RabbitMQ consumers.
	HeaderSubject = "x-ferry-subject"
	HeaderKeys    = "x-ferry-keys"
	HeaderTopic   = "x-ferry-topic"
	// PropAMQPMessageID keeps an inbound message's AMQP message id.
	PropAMQPMessageID = "x-amqp-message-id"
	// PropDeadLetterReason says why a bridge set a message aside.
	PropDeadLetterReason = "x-ferry-dead-letter-reason"
)

// maxField is the longest subject, key, property name or value the store
// keeps; longer inbound headers are dropped.
const maxField = 65535

// routingKey renders the template for m (routingkey.Render): {topic},
// {subject} with '/' turned to '.', {key} the first key.
func routingKey(tmpl string, m *core.Message) string {
	var key string
	if len(m.Keys) > 0 {
		key = m.Keys[0]
	}
	return routingkey.Render(tmpl, m.Topic, m.Subject, key)
}

// hops is the hop count a message carries (0 when none or garbled).
func hops(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// publishing builds the AMQP message for an outbound core message.
func publishing(m *core.Message, id string, hop int) amqp.Publishing {
	h := make(amqp.Table, len(m.Properties)+4)
	for k, v := range m.Properties.All() {
		h[k] = v
	}
	h[HeaderTopic] = m.Topic
	h[HeaderHops] = int32(hop)
	if m.Subject != "" {
		h[HeaderSubject] = m.Subject
	}
	if len(m.Keys) > 0 {
		keys := make([]any, len(m.Keys))
		for i, k := range m.Keys {
			keys[i] = k
		}
		h[HeaderKeys] = keys
	}
	p := amqp.Publishing{
		Headers:      h,
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Body:         m.Body,
	}
	if m.BornTime > 0 {
		p.Timestamp = time.Unix(0, m.BornTime)
	}
	return p
}

// message builds the core message for an inbound delivery; origin is the
// RabbitMQ it came from, unless it names an earlier one. dropped counts the
// headers too long to keep or of a type with no string form.
func message(topic, origin string, d *amqp.Delivery) (m *core.Message, dropped int) {
	m = &core.Message{Topic: topic, Subject: routingkey.SubjectOf(topic, d.RoutingKey), Body: d.Body,
		Properties: make(core.Properties, 0, len(d.Headers)+2)}
	for k, v := range d.Headers {
		switch k {
		case HeaderSubject, HeaderTopic:
			continue // the routing key says where it goes here
		case HeaderKeys:
			if list, ok := v.([]any); ok {
				for _, e := range list {
					if s, ok := e.(string); ok && len(s) <= maxField {
						m.Keys = append(m.Keys, s)
					}
				}
			}
			continue
		}
		s, ok := headerString(v)
		if !ok || len(k) > maxField || len(s) > maxField {
			dropped++
			continue
		}
		m.Properties = append(m.Properties, core.Property{Name: k, Value: s}) // a table's names are distinct
	}
	if m.Properties.Get(HeaderOrigin) == "" {
		m.Properties.Set(HeaderOrigin, origin)
	}
	m.Properties.Set(HeaderHops, strconv.Itoa(hops(m.Properties.Get(HeaderHops))))
	if d.MessageId != "" {
		m.Properties.Set(PropAMQPMessageID, d.MessageId)
	}
	if !d.Timestamp.IsZero() {
		m.BornTime = d.Timestamp.UnixNano()
	}
	return m, dropped
}

// headerString is a header value's string form; tables and arrays have none.
func headerString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case bool, int8, uint8, int16, uint16, int32, uint32, int64, int, float32, float64, amqp.Decimal:
		return fmt.Sprint(v), true
	case time.Time:
		return v.UTC().Format(time.RFC3339), true
	default:
		return "", false
	}
}
