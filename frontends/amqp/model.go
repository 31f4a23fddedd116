package amqp

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/internal/routingkey"
)

// Exchange types.
const (
	typeDirect  = "direct"
	typeFanout  = "fanout"
	typeTopic   = "topic"
	typeHeaders = "headers"
)

// The exchanges every vhost has [spec §3.1.3.1: amq.direct, amq.fanout,
// amq.topic, amq.headers and the default exchange].
const (
	defaultExchange = ""
	amqTopic        = "amq.topic"
)

// Core topics of the exchanges. amq.topic has none of its own: the first
// word of a routing key is the topic, as MQTT's first level is. The default
// exchange's messages go to DefaultTopic with the queue name as subject;
// every other exchange has a topic of its own, "amqp-x-" and its name.
// Topics starting with "amqp-" are not reached through amq.topic.
const (
	DefaultTopic  = "amqp-default"
	exchangeTopic = "amqp-x-"
	reservedTopic = "amqp-"
)

// exchangeRec is an exchange as the state log keeps it (durable ones).
type exchangeRec struct {
	Type       string `json:"type"`
	Durable    bool   `json:"durable,omitempty"`
	AutoDelete bool   `json:"auto_delete,omitempty"`
	Internal   bool   `json:"internal,omitempty"`
	Topic      string `json:"topic,omitempty"`
}

// bindingRec is a binding of a queue to an exchange.
type bindingRec struct {
	Exchange string            `json:"x"`
	Key      string            `json:"k"`
	Args     map[string]string `json:"a,omitempty"` // headers exchanges' match arguments, as strings
	At       int64             `json:"at"`          // unix nanoseconds: the queue reads the exchange's messages from then
}

// queueRec is a queue as the state log keeps it (durable ones), with its
// bindings.
type queueRec struct {
	Group      string       `json:"group"`
	Durable    bool         `json:"durable,omitempty"`
	Exclusive  bool         `json:"exclusive,omitempty"`
	AutoDelete bool         `json:"auto_delete,omitempty"`
	Declared   int64        `json:"declared"`
	TTL        int64        `json:"ttl,omitempty"` // x-message-ttl, milliseconds; 0: none
	MaxLength  int64        `json:"max_length,omitempty"`
	DLX        string       `json:"dlx,omitempty"`
	DLRK       string       `json:"dlrk,omitempty"`
	HasDLRK    bool         `json:"has_dlrk,omitempty"`
	Type       string       `json:"type,omitempty"`
	Bindings   []bindingRec `json:"bindings,omitempty"`
}

type exchange struct {
	name string
	rec  exchangeRec
}

// vhost is the model of vhost "/": exchanges, queues and their bindings.
// Durable declarations are state in the log (core.State "amqp"): keys
// "x/<exchange>" and "q/<queue>".
//
// Lock order: vhost.mu → queue.mu → channel.mu.
type vhost struct {
	s     *Server
	state *core.State

	mu        sync.Mutex
	exchanges map[string]*exchange
	queues    map[string]*queue
	topics    map[string]string // core topic → its exchange
}

func newVhost(s *Server) (*vhost, error) {
	st, err := s.broker.State("amqp")
	if err != nil {
		return nil, err
	}
	v := &vhost{s: s, state: st, exchanges: map[string]*exchange{}, queues: map[string]*queue{}, topics: map[string]string{}}
	for _, x := range []struct{ name, typ string }{
		{defaultExchange, typeDirect}, {"amq.direct", typeDirect}, {"amq.fanout", typeFanout},
		{amqTopic, typeTopic}, {"amq.headers", typeHeaders}, {"amq.match", typeHeaders},
	} {
		rec := exchangeRec{Type: x.typ, Durable: true}
		switch x.name {
		case defaultExchange:
			rec.Topic = DefaultTopic
		case amqTopic:
		default:
			rec.Topic = v.topicFor(x.name)
		}
		v.addExchange(x.name, rec)
	}
	var queues []struct {
		name string
		rec  queueRec
	}
	err = st.Each(func(key string, raw json.RawMessage) error {
		kind, name, _ := strings.Cut(key, "/")
		switch kind {
		case "x":
			var rec exchangeRec
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("amqp: exchange %q in the state log: %w", name, err)
			}
			v.addExchange(name, rec)
		case "q":
			var rec queueRec
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("amqp: queue %q in the state log: %w", name, err)
			}
			queues = append(queues, struct {
				name string
				rec  queueRec
			}{name, rec})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, q := range queues {
		if _, err := v.startQueue(q.name, q.rec, nil, false); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (v *vhost) addExchange(name string, rec exchangeRec) {
	v.exchanges[name] = &exchange{name: name, rec: rec}
	if rec.Topic != "" {
		v.topics[rec.Topic] = name
	}
}

// topicFor picks the core topic of a new exchange: "amqp-x-" and its name
// with what topic names cannot hold turned to '_', and a hash of the name
// when that is taken or too long. Caller holds v.mu (or is newVhost).
func (v *vhost) topicFor(name string) string {
	t := exchangeTopic + sanitize(name, 100)
	if _, taken := v.topics[t]; taken || len(name) > 100 || t != exchangeTopic+name {
		h := fnv.New64a()
		h.Write([]byte(name))
		t = fmt.Sprintf("%s-%x", t, h.Sum64())
	}
	return t
}

// sanitize keeps letters, digits, '-' and '_' of s, turns the rest to '_',
// and cuts it at max bytes.
func sanitize(s string, max int) string {
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// newGroup names a new queue's consumer group: the queue's name and a
// random suffix, so that a queue deleted and declared again starts afresh.
func newGroup(queue string) string {
	var r [6]byte
	rand.Read(r[:])
	return "amqp-" + sanitize(queue, 80) + "-" + hex.EncodeToString(r[:])
}

// declareExchange declares an exchange [spec exchange.declare].
func (v *vhost) declareExchange(name, typ string, passive, durable, autoDelete, internal bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	x := v.exchanges[name]
	if passive {
		if x == nil {
			return chanErr(codeNotFound, fmt.Sprintf("no exchange '%s' in vhost '/'", name))
		}
		return nil
	}
	if x != nil {
		if x.rec.Type != typ || x.rec.Durable != durable || x.rec.AutoDelete != autoDelete || x.rec.Internal != internal {
			return chanErr(codePreconditionFail, fmt.Sprintf("inequivalent arg for exchange '%s' in vhost '/': declared %s durable=%v auto_delete=%v internal=%v, asked %s durable=%v auto_delete=%v internal=%v",
				name, x.rec.Type, x.rec.Durable, x.rec.AutoDelete, x.rec.Internal, typ, durable, autoDelete, internal))
		}
		return nil
	}
	if name == defaultExchange || strings.HasPrefix(name, "amq.") {
		return chanErr(codeAccessRefused, fmt.Sprintf("exchange name '%s' contains reserved prefix 'amq.*'", name))
	}
	switch typ {
	case typeDirect, typeFanout, typeTopic, typeHeaders:
	default:
		return connErr(codeCommandInvalid, fmt.Sprintf("unknown exchange type '%s'", typ))
	}
	rec := exchangeRec{Type: typ, Durable: durable, AutoDelete: autoDelete, Internal: internal, Topic: v.topicFor(name)}
	if durable {
		if err := v.state.Save("x/"+name, rec); err != nil {
			return internalErr(err)
		}
	}
	v.addExchange(name, rec)
	return nil
}

// deleteExchange deletes an exchange and the bindings from it.
func (v *vhost) deleteExchange(name string, ifUnused bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	x := v.exchanges[name]
	if x == nil {
		return nil // RabbitMQ: deleting a missing exchange succeeds
	}
	if name == defaultExchange || strings.HasPrefix(name, "amq.") {
		return chanErr(codeAccessRefused, fmt.Sprintf("cannot delete exchange '%s': it is predeclared", name))
	}
	var bound []*queue
	for _, q := range v.queues {
		if q.hasBinding(func(b *bindingRec) bool { return b.Exchange == name }) {
			bound = append(bound, q)
		}
	}
	if ifUnused && len(bound) > 0 {
		return chanErr(codePreconditionFail, fmt.Sprintf("exchange '%s' in vhost '/' in use", name))
	}
	for _, q := range bound {
		if err := q.unbindAll(name); err != nil {
			return err
		}
	}
	if x.rec.Durable {
		if err := v.state.Delete("x/" + name); err != nil {
			return internalErr(err)
		}
	}
	delete(v.exchanges, name)
	delete(v.topics, x.rec.Topic)
	return nil
}

// exchange returns the exchange named name or a 404 channel error.
func (v *vhost) exchange(name string) (*exchange, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	x := v.exchanges[name]
	if x == nil {
		return nil, chanErr(codeNotFound, fmt.Sprintf("no exchange '%s' in vhost '/'", name))
	}
	return x, nil
}

// queue returns the queue named name, checked for use by conn (exclusive
// queues are their connection's), or a channel error.
func (v *vhost) queue(name string, c *conn) (*queue, error) {
	v.mu.Lock()
	q := v.queues[name]
	v.mu.Unlock()
	if q == nil {
		return nil, chanErr(codeNotFound, fmt.Sprintf("no queue '%s' in vhost '/'", name))
	}
	if q.owner != nil && q.owner != c {
		return nil, chanErr(codeResourceLocked, fmt.Sprintf("cannot obtain exclusive access to locked queue '%s' in vhost '/'", name))
	}
	return q, nil
}

// queueArgs reads the x-arguments of queue.declare Ferry honours.
func queueArgs(rec *queueRec, args Table) error {
	num := func(k string) (int64, bool, error) {
		v, ok := args[k]
		if !ok {
			return 0, false, nil
		}
		switch n := v.(type) {
		case int8:
			return int64(n), true, nil
		case uint8:
			return int64(n), true, nil
		case int16:
			return int64(n), true, nil
		case uint16:
			return int64(n), true, nil
		case int32:
			return int64(n), true, nil
		case uint32:
			return int64(n), true, nil
		case int64:
			return n, true, nil
		}
		return 0, true, chanErr(codePreconditionFail, fmt.Sprintf("invalid arg '%s' for queue: want an integer, got %T", k, v))
	}
	str := func(k string) (string, bool, error) {
		v, ok := args[k]
		if !ok {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", true, chanErr(codePreconditionFail, fmt.Sprintf("invalid arg '%s' for queue: want a string, got %T", k, v))
		}
		return s, true, nil
	}
	var err error
	var ok bool
	if rec.TTL, ok, err = num("x-message-ttl"); err != nil {
		return err
	} else if ok && rec.TTL < 0 {
		return chanErr(codePreconditionFail, "invalid arg 'x-message-ttl' for queue: negative")
	}
	if rec.MaxLength, ok, err = num("x-max-length"); err != nil {
		return err
	} else if ok && rec.MaxLength < 0 {
		return chanErr(codePreconditionFail, "invalid arg 'x-max-length' for queue: negative")
	}
	if rec.DLX, _, err = str("x-dead-letter-exchange"); err != nil {
		return err
	}
	if rec.DLRK, rec.HasDLRK, err = str("x-dead-letter-routing-key"); err != nil {
		return err
	}
	if rec.Type, _, err = str("x-queue-type"); err != nil {
		return err
	}
	switch rec.Type {
	case "", "classic", "quorum", "stream":
	default:
		return chanErr(codePreconditionFail, fmt.Sprintf("invalid arg 'x-queue-type' for queue: unknown type '%s'", rec.Type))
	}
	return nil
}

// declareQueue declares a queue for conn [spec queue.declare] and returns
// it with its message and consumer counts.
func (v *vhost) declareQueue(c *conn, name string, passive, durable, exclusive, autoDelete bool, args Table) (*queue, error) {
	if name == "" && !passive {
		var r [12]byte
		rand.Read(r[:])
		name = "amq.gen-" + hex.EncodeToString(r[:])
	} else if strings.HasPrefix(name, "amq.") && !passive {
		return nil, chanErr(codeAccessRefused, fmt.Sprintf("queue name '%s' contains reserved prefix 'amq.*'", name))
	}
	if passive {
		return v.queue(name, c)
	}
	v.mu.Lock()
	q := v.queues[name]
	v.mu.Unlock()
	if q != nil {
		if q.owner != nil && q.owner != c {
			return nil, chanErr(codeResourceLocked, fmt.Sprintf("cannot obtain exclusive access to locked queue '%s' in vhost '/'", name))
		}
		r := q.rec()
		if r.Durable != durable || r.Exclusive != exclusive || r.AutoDelete != autoDelete {
			return nil, chanErr(codePreconditionFail, fmt.Sprintf("inequivalent arg for queue '%s' in vhost '/': declared durable=%v exclusive=%v auto_delete=%v, asked durable=%v exclusive=%v auto_delete=%v",
				name, r.Durable, r.Exclusive, r.AutoDelete, durable, exclusive, autoDelete))
		}
		return q, nil
	}
	rec := queueRec{Group: newGroup(name), Durable: durable, Exclusive: exclusive, AutoDelete: autoDelete,
		Declared: time.Now().UnixNano()}
	if err := queueArgs(&rec, args); err != nil {
		return nil, err
	}
	var owner *conn
	if exclusive {
		owner = c
	}
	return v.startQueue(name, rec, owner, true)
}

// startQueue starts a declared queue (its group member and dispatcher),
// saving it first when it is durable and new.
func (v *vhost) startQueue(name string, rec queueRec, owner *conn, fresh bool) (*queue, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if q := v.queues[name]; q != nil {
		return q, nil
	}
	q := newQueue(v, name, rec, owner)
	if err := q.join(); err != nil {
		return nil, internalErr(err)
	}
	if fresh && rec.Durable && !rec.Exclusive {
		if err := q.save(); err != nil {
			q.member.Leave()
			return nil, internalErr(err)
		}
	}
	v.queues[name] = q
	if owner != nil {
		owner.own(q)
	}
	q.start()
	return q, nil
}

// deleteQueue deletes q: its consumers are cancelled, its group and its
// state dropped. It returns the messages it held.
func (v *vhost) deleteQueue(q *queue, ifUnused, ifEmpty bool) (uint32, error) {
	n := q.messageCount()
	if ifUnused && q.consumerCount() > 0 {
		return 0, chanErr(codePreconditionFail, fmt.Sprintf("queue '%s' in vhost '/' in use", q.name))
	}
	if ifEmpty && n > 0 {
		return 0, chanErr(codePreconditionFail, fmt.Sprintf("queue '%s' in vhost '/' is not empty", q.name))
	}
	v.mu.Lock()
	if v.queues[q.name] != q {
		v.mu.Unlock()
		return 0, nil
	}
	delete(v.queues, q.name)
	v.mu.Unlock()
	q.close(true)
	if q.rec().Durable {
		if err := v.state.Delete("q/" + q.name); err != nil {
			return 0, internalErr(err)
		}
	}
	if err := v.s.broker.DeleteGroup(q.rec().Group); err != nil && !errors.Is(err, core.ErrUnknownGroup) {
		v.s.log.Warn("amqp: dropping a deleted queue's consumer group", "queue", q.name, "err", err)
	}
	return n, nil
}

// bind binds q to exchange x with key and args [spec queue.bind].
func (v *vhost) bind(q *queue, xname, key string, args Table) error {
	x, err := v.exchange(xname)
	if err != nil {
		return err
	}
	if xname == defaultExchange {
		return chanErr(codeAccessRefused, "operation not permitted on the default exchange")
	}
	return q.bind(x, bindingRec{Exchange: xname, Key: key, Args: headerArgs(args), At: time.Now().UnixNano()})
}

// headerArgs keeps the arguments of a binding as strings (headers
// exchanges match them against the message's headers as strings).
func headerArgs(args Table) map[string]string {
	if len(args) == 0 {
		return nil
	}
	out := make(map[string]string, len(args))
	for k, v := range args {
		if s, ok := headerString(v); ok {
			out[k] = s
		}
	}
	return out
}

// route says where a publish to exchange x with key goes in the core:
// topic and subject. ok is false when the key names no topic (an
// amq.topic key whose first word is not a topic name): the message is
// unroutable.
func route_(x *exchange, key string) (topic, subject string, ok bool) {
	switch {
	case x.name == defaultExchange:
		return DefaultTopic, key, key != ""
	case x.rec.Topic == "": // amq.topic
		topic, subject = routingkey.Split(key)
		if core.ValidTopic(topic) != nil || topic[0] == '%' || strings.HasPrefix(topic, reservedTopic) {
			return "", "", false
		}
		return topic, subject, true
	}
	return x.rec.Topic, strings.ReplaceAll(key, ".", "/"), true
}

// keyOf is route_ reversed: the routing key a message of topic with
// subject had on exchange x.
func keyOf(x *exchange, topic, subject string) string {
	switch {
	case x.name == defaultExchange:
		return subject
	case x.rec.Topic == "":
		return routingkey.Key(topic, subject)
	}
	return strings.ReplaceAll(subject, "/", ".")
}

// sub is what a binding reads in the core.
func (b *bindingRec) sub(x *exchange) core.GroupSub {
	since := time.Unix(0, b.At)
	if x.rec.Topic == "" { // amq.topic
		s := routingkey.TopicSub(b.Key)
		s.Since = since
		return s
	}
	s := core.GroupSub{Topic: x.rec.Topic, Since: since}
	switch x.rec.Type {
	case typeDirect:
		s.Filter = route.Exact(strings.ReplaceAll(b.Key, ".", "/"))
	case typeTopic:
		s.Filter = routingkey.SubjectFilter(b.Key)
	}
	return s
}

// matches reports whether a message of x with routing key and headers
// goes through binding b [spec §3.1.3: direct, fanout, topic; headers is
// RabbitMQ's x-match all/any].
func (b *bindingRec) matches(x *exchange, key string, headers func(string) (string, bool)) bool {
	switch x.rec.Type {
	case typeFanout:
		return true
	case typeTopic:
		return routingkey.Match(b.Key, key)
	case typeHeaders:
		any := b.Args["x-match"] == "any" || b.Args["x-match"] == "any-with-x"
		n := 0
		for k, want := range b.Args {
			if strings.HasPrefix(k, "x-") {
				continue
			}
			got, ok := headers(k)
			hit := ok && (want == "" || got == want)
			if any && hit {
				return true
			}
			if !any && !hit {
				return false
			}
			n++
		}
		return !any || n == 0
	}
	return b.Key == key
}

// routed reports whether any queue's binding takes a message published to
// x with key: a mandatory publish nobody takes is returned.
func (v *vhost) routed(x *exchange, key string, headers func(string) (string, bool)) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if x.name == defaultExchange {
		return v.queues[key] != nil
	}
	for _, q := range v.queues {
		if q.hasBinding(func(b *bindingRec) bool { return b.Exchange == x.name && b.matches(x, key, headers) }) {
			return true
		}
	}
	return false
}

// connClosed deletes the exclusive queues of c.
func (v *vhost) connClosed(c *conn, qs []*queue) {
	for _, q := range qs {
		if _, err := v.deleteQueue(q, false, false); err != nil {
			v.s.log.Warn("amqp: deleting an exclusive queue", "queue", q.name, "err", err)
		}
	}
}

// close stops every queue's dispatcher (their state stays).
func (v *vhost) close() {
	v.mu.Lock()
	qs := make([]*queue, 0, len(v.queues))
	for _, q := range v.queues {
		qs = append(qs, q)
	}
	v.mu.Unlock()
	for _, q := range qs {
		q.close(false)
	}
}

func internalErr(err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	return connErr(codeInternalError, err.Error())
}
