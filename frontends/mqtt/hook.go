package mqtt

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
)

// hook connects the protocol engine to the core: it authenticates, stores
// publishes, keeps sessions and their subscriptions, and hands the engine
// back what Ferry saved of them at start.
type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "ferry" }

// provided are the engine's hook events the hook takes. The engine asks
// Provides for every packet and every hook call, so it is a table lookup.
var provided = func() (t [256]bool) {
	for _, b := range []byte{
		mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnSessionEstablish, mochi.OnSessionEstablished,
		mochi.OnDisconnect, mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnPublish,
		mochi.OnPacketRead, mochi.OnQosComplete, mochi.OnWill, mochi.OnClientExpired,
		mochi.OnConnect, mochi.OnPacketEncode, mochi.OnUnsubscribe,
		mochi.StoredClients, mochi.StoredSubscriptions, mochi.StoredInflightMessages, mochi.OnRetainedExpired,
	} {
		t[b] = true
	}
	return t
}()

func (h *hook) Provides(b byte) bool { return provided[b] }

// OnConnect applies mqtt.max-keep-alive, and refuses a will whose topic is over the topic limits or cannot
// be mapped onto a core topic: MQTT 5 with CONNACK 0x90 (topic name
// invalid) and the reason; 3.1.1, which has no code for it, by closing the
// connection. A will would otherwise be found unpublishable only when the
// client is gone. A will on a reserved topic ('$') is refused the same way
// under MQTT 5; under 3.1.1 the connection is accepted and the will
// dropped, as a PUBLISH there is.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	if max := h.s.cfg.MaxKeepAlive; max > 0 && cl.Properties.ProtocolVersion == 5 && (cl.State.Keepalive == 0 || cl.State.Keepalive > max) {
		cl.State.Keepalive, cl.State.ServerKeepalive = max, true // the engine says it in CONNACK and applies it
	}
	if !pk.Connect.WillFlag {
		return nil
	}
	topic := pk.Connect.WillTopic
	err := h.s.topicLimit(topic)
	if err != nil {
		h.s.limitHit(hit(err), err, "client", cl.ID, "remote", cl.Net.Remote, "will", true)
	} else if strings.HasPrefix(topic, "$") {
		if cl.Properties.ProtocolVersion != 5 {
			return nil // dropped by OnWill
		}
		err = errors.New(reservedTopic)
	} else if _, _, err = h.s.mapper.toCore(topic); err != nil {
		h.s.log.Info("mqtt: will topic refused", "client", cl.ID, "remote", cl.Net.Remote, "topic", clip(topic), "err", err)
	}
	if err == nil {
		return nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.s.mq.SendConnack(cl, packets.Code{Code: packets.ErrTopicNameInvalid.Code, Reason: cleanReason("will " + err.Error())}, false, nil)
	}
	return packets.ErrTopicNameInvalid
}

// topicLimit checks a topic name or filter against mqtt.max-topic-levels
// and mqtt.max-topic-length.
func (s *Server) topicLimit(topic string) error {
	return topicLimit(topic, s.cfg.MaxTopicLevels, s.cfg.MaxTopicLength)
}

// OnPacketEncode says the server's limits in a successful MQTT 5 CONNACK,
// a SUBACK's reason string when a filter was over the topic limits, and
// success in the PUBREC that answers a resent QoS 2 PUBLISH.
func (h *hook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.Properties.MaximumPacketSize = h.s.cfg.MaxPacketSize                   // [MQTT-3.2.2-15]
			pk.Properties.TopicAliasMaximum = uint16(h.s.cfg.MaxTopicAlias)           // [MQTT-3.2.2-17]
			pk.Properties.ReceiveMaximum = h.s.mq.Options.Capabilities.ReceiveMaximum // [MQTT-3.3.4-7]
		}
	case packets.Suback:
		h.s.mu.Lock()
		r, ok := h.s.subReason[cl]
		if ok && r.id == pk.PacketID {
			delete(h.s.subReason, cl)
			pk.Properties.ReasonString = r.reason
		}
		h.s.mu.Unlock()
	case packets.Pubrec:
		// The engine answers a QoS 2 PUBLISH resent before its PUBREL (after a
		// reconnect, or a restart: QoS2In) with PUBREC 0x91, packet
		// identifier in use, which ends the exchange at an MQTT 5 client as
		// a failure though the message was stored. It is the same exchange
		// going on: PUBREC success, and the message is not stored again
		// [MQTT-4.3.3-10]. Ferry's own PUBRECs never carry 0x91.
		if pk.ReasonCode == packets.ErrPacketIdentifierInUse.Code {
			pk.ReasonCode, pk.Properties.ReasonString = packets.CodeSuccess.Code, ""
		}
	}
	return pk
}

// OnUnsubscribe drops filters over the topic limits before the engine
// looks them up: none can be subscribed.
func (h *hook) OnUnsubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	for i, sub := range pk.Filters {
		if err := h.s.topicLimit(sub.Filter); err != nil {
			h.s.limitHit(hit(err), err, "client", cl.ID, "unsubscribe", true)
			pk.Filters[i].Filter = "#/" // invalid: no subscription existed
		}
	}
	return pk
}

func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	g := h.s.cfg.Guard
	if g == nil {
		return true
	}
	if err := g.Authenticate(string(pk.Connect.Username), string(pk.Connect.Password)); err != nil {
		h.s.log.Info("mqtt: connection refused", "client", cl.ID, "remote", cl.Net.Remote, "user", string(pk.Connect.Username), "err", err)
		return false
	}
	return true
}

func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	g := h.s.cfg.Guard
	if g == nil {
		return true
	}
	user := string(cl.Properties.Username)
	if write {
		ok := g.Allow(user, cl.ID, auth.Write, topic)
		if !ok && !strings.HasPrefix(topic, "$") { // '$': refused and counted before (refuseTopic, refuseReserved)
			h.s.countRefusal(causeACL)
		}
		return ok
	}
	if group, f, ok := shareOf(topic); ok {
		if !g.AllowGroup(user, auth.GroupJoin, group) {
			return false
		}
		topic = f
	}
	return g.AllowFilter(user, cl.ID, topic)
}

// OnSessionEstablish runs before the engine takes over an existing session:
// the old connection's feeds stop first, so that no delivery is in flight
// on two connections.
func (h *hook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	s := h.s
	s.mu.Lock()
	old := s.sessions[cl.ID]
	delete(s.sessions, cl.ID)
	if t := s.wills[cl.ID]; t != nil { // [MQTT-3.1.3-9]
		t.Stop()
		delete(s.wills, cl.ID)
	}
	s.mu.Unlock()
	if old != nil {
		old.end(false)
	}
	if pk.Connect.Clean { // [MQTT-3.1.2-4]
		s.forget(cl.ID)
	}
}

func (h *hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	s := h.s
	persistent := !cl.Properties.Clean
	expiry := s.cfg.MaxSessionExpiry
	if cl.Properties.ProtocolVersion == 5 {
		persistent = cl.Properties.Props.SessionExpiryInterval > 0
		expiry = cl.Properties.Props.SessionExpiryInterval
	}
	window := s.cfg.MaxInflight
	if rm := int(cl.Properties.Props.ReceiveMaximum); cl.Properties.ProtocolVersion == 5 && rm > 0 {
		window = min(window, rm) // [MQTT-3.3.4-9]
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{srv: s, id: cl.ID, user: string(cl.Properties.Username), cl: cl, persistent: persistent, since: time.Now(),
		window: window, ctx: ctx, cancel: cancel, willProps: willProps(pk)}
	var saved map[string]int64
	if st, ok := s.state.session(cl.ID); ok && !pk.Connect.Clean {
		saved = make(map[string]int64, len(st.Subs))
		for _, sub := range st.Subs {
			saved[sub.Filter] = sub.At
		}
	}
	for f, sub := range cl.State.Subscriptions.GetAll() {
		st := fromSubscription(sub)
		st.At = saved[f]
		put(&ss.subs, f, st)
	}
	if persistent {
		gen := s.state.update(func() (string, string) {
			st := s.state.sessions[cl.ID]
			if st == nil {
				st = &sessionState{ID: cl.ID}
				s.state.sessions[cl.ID] = st
			}
			st.Username, st.Version, st.Expiry, st.Connected, st.Left = ss.user, cl.Properties.ProtocolVersion, expiry, true, 0
			st.Subs = subList(ss.subs)
			st.Will = willOf(cl.Properties.Will, ss.willProps)
			return cl.ID, ""
		})
		_ = s.state.wait(ctx, gen)
	}
	s.mu.Lock()
	s.sessions[cl.ID] = ss
	s.mu.Unlock()
	ss.applySubs() // failures are logged; the session goes on with the rest
}

func (h *hook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	s := h.s
	s.acker.wake() // a connection that ended mid-burst left its PUBACKs (and maybe others') queued
	s.mu.Lock()
	delete(s.subReason, cl)
	ss := s.sessions[cl.ID]
	if ss == nil || ss.cl != cl { // restored at start, or taken over
		s.mu.Unlock()
		return
	}
	delete(s.sessions, cl.ID)
	s.mu.Unlock()
	ss.end(!ss.persistent)
	if ss.persistent {
		s.state.update(func() (string, string) {
			if st := s.state.sessions[cl.ID]; st != nil {
				st.Connected, st.Left = false, time.Now().Unix()
				return cl.ID, ""
			}
			return "", ""
		})
	}
}

func (h *hook) OnClientExpired(cl *mochi.Client) {
	h.s.forget(cl.ID)
}

// forget drops what Ferry keeps of a session: its state and its group's
// offsets.
func (s *Server) forget(id string) {
	s.state.update(func() (string, string) {
		if _, ok := s.state.sessions[id]; !ok {
			return "", ""
		}
		delete(s.state.sessions, id)
		return id, ""
	})
	if err := s.core.DeleteGroup(ownGroup(id)); err != nil && !errors.Is(err, core.ErrUnknownGroup) {
		s.log.Warn("mqtt: deleting a session's group failed", "client", id, "err", err)
	}
}

// OnSubscribe refuses the filters the core cannot serve, by handing the
// engine an invalid filter in their place (it answers "topic filter
// invalid"). Filters over the topic limits are refused first, before any
// other work on them; MQTT 5 gets the reason in the SUBACK.
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	h.s.sweepRetained() // before the engine sends the retained messages [MQTT-3.3.2-5]
	for i, sub := range pk.Filters {
		f := sub.Filter
		if err := h.s.topicLimit(f); err != nil {
			h.s.limitHit(hit(err), err, "client", cl.ID, "remote", cl.Net.Remote)
			pk.Filters[i].Filter = "#/" // SUBACK 0x8F, topic filter invalid [MQTT-3.9.3-2]
			if cl.Properties.ProtocolVersion == 5 {
				h.s.mu.Lock()
				h.s.subReason[cl] = subReason{id: pk.PacketID, reason: cleanReason("filter " + err.Error())}
				h.s.mu.Unlock()
			}
			continue
		}
		if g, rest, ok := shareOf(f); ok {
			if err := core.ValidTopic(g); err != nil || g[0] == '%' {
				h.s.log.Info("mqtt: shared subscription refused: the share name is not a Ferry group name", "client", cl.ID, "filter", f)
				pk.Filters[i].Filter = "#/"
				continue
			}
			f = rest
		}
		if len(f) > 0 && f[0] == '$' {
			continue
		}
		if _, err := h.s.mapper.filter(f); err != nil {
			h.s.log.Info("mqtt: subscription refused", "client", cl.ID, "filter", f, "err", err)
			pk.Filters[i].Filter = "#/"
		}
	}
	return pk
}

// OnSubscribed joins the core groups of the new subscriptions before the
// engine sends SUBACK, so that everything published after it is delivered.
func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	ss := h.s.session(cl)
	if ss == nil {
		return
	}
	ss.mu.Lock()
	for i, sub := range pk.Filters {
		if i < len(codes) && codes[i] <= 2 {
			s := fromSubscription(sub)
			s.QoS, s.At = codes[i], time.Now().UnixMilli()
			if old, ok := ss.subs[sub.Filter]; ok {
				s.At = old.At // a subscription replaced goes on where it was [MQTT-3.8.4-3]
			}
			put(&ss.subs, sub.Filter, s)
		}
	}
	ss.mu.Unlock()
	failed := ss.applySubs()
	if len(failed) > 0 {
		// The engine builds SUBACK from codes after this hook: a filter
		// whose group could not be joined (a share named after a
		// broadcasting group, say) is refused there.
		ss.mu.Lock()
		for i, sub := range pk.Filters {
			if _, bad := failed[ss.groupOf(sub.Filter)]; bad && i < len(codes) && codes[i] <= 2 {
				codes[i] = packets.ErrUnspecifiedError.Code
				delete(ss.subs, sub.Filter)
				cl.State.Subscriptions.Delete(sub.Filter)
				h.s.mq.Topics.Unsubscribe(sub.Filter, cl.ID)
			}
		}
		ss.mu.Unlock()
	}
	ss.saveSubs(true)
}

func (h *hook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	ss := h.s.session(cl)
	if ss == nil {
		return
	}
	ss.mu.Lock()
	for _, sub := range pk.Filters {
		delete(ss.subs, sub.Filter)
	}
	ss.mu.Unlock()
	ss.saveSubs(false)
	ss.applySubs()
}

// session returns cl's session if cl is its current connection.
func (s *Server) session(cl *mochi.Client) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[cl.ID]; ss != nil && ss.cl == cl {
		return ss
	}
	return nil
}

func (ss *session) saveSubs(wait bool) {
	if !ss.persistent {
		return
	}
	ss.mu.Lock()
	subs := subList(ss.subs)
	ss.mu.Unlock()
	st := ss.srv.state
	gen := st.update(func() (string, string) {
		if s := st.sessions[ss.id]; s != nil {
			s.Subs = subs
			return ss.id, ""
		}
		return "", ""
	})
	if wait {
		if err := st.wait(ss.ctx, gen); err != nil {
			ss.srv.log.Warn("mqtt: saving a session's subscriptions failed", "client", ss.id, "err", err)
		}
	}
}

// OnPublish stores a client's PUBLISH in the core before the engine
// acknowledges it, and tells the engine not to route it: the subscribers'
// feeds read it from the core like any other message.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.s
	read := time.Now()
	if strings.HasPrefix(pk.TopicName, "$") { // named through a topic alias: see OnPacketRead
		h.refuseReserved(cl, pk)
		return pk, packets.ErrRejectPacket
	}
	topic, subject, err := s.mapper.toCore(pk.TopicName)
	if err != nil {
		s.observePublish(read)
		return h.refuse(cl, pk, packets.ErrTopicNameInvalid, err)
	}
	m := &core.Message{Topic: topic, Subject: subject, Body: pk.Payload, Properties: inProperties(cl, &pk), BornTime: read.UnixNano()}
	// A QoS 1 publish is acknowledged once it is durable (its write, or
	// with sync flush its fsync, is done), and the reader goes on
	// meanwhile: at the end of the burst, the goroutine that handled it
	// writes what the burst stored and sends its PUBACKs (acker.readIdle),
	// or leaves them to the acker's goroutine. A QoS 0 publish has no
	// acknowledgement to hold back, so nothing waits for it.
	deferAck := pk.FixedHeader.Qos == 1
	noWait := deferAck || pk.FixedHeader.Qos == 0
	res, err := s.core.Publish(s.ctx, m, core.PublishOptions{Queue: core.QueueAuto, ShardKey: pk.TopicName, NoWait: noWait, Deferred: deferAck})
	if !deferAck || err != nil { // the acker times the others up to their PUBACK
		defer s.observePublish(read)
	}
	if err != nil {
		code := packets.ErrUnspecifiedError
		switch {
		case errors.Is(err, core.ErrMessageTooLarge):
			code = packets.ErrPacketTooLarge
		case errors.Is(err, core.ErrDiskFull):
			code = packets.ErrQuotaExceeded
		case errors.Is(err, core.ErrInvalidName), errors.Is(err, core.ErrUnknownTopic):
			code = packets.ErrTopicNameInvalid
		}
		return h.refuse(cl, pk, code, err)
	}
	s.received.Add(1)
	if pk.FixedHeader.Retain {
		s.retain(pk.TopicName, pk.Payload, pk.FixedHeader.Qos, m.Properties)
	}
	if deferAck {
		s.acker.queue(cl, pk.PacketID, res.End, read) // sent at the burst's end (acker.readIdle)
		return deferredAck(pk), nil
	}
	if pk.FixedHeader.Qos == 2 {
		if ss := s.session(cl); ss != nil && ss.persistent {
			gen := s.state.update(func() (string, string) {
				if st := s.state.sessions[cl.ID]; st != nil {
					st.QoS2In = append(st.QoS2In, pk.PacketID)
					return cl.ID, ""
				}
				return "", ""
			})
			_ = s.state.wait(ss.ctx, gen)
		}
	}
	return pk, packets.CodeSuccessIgnore // acknowledged, not routed by the engine
}

// deferredAck is what the engine is handed back for a QoS 1 PUBLISH the
// acker acknowledges: the engine neither acknowledges nor routes it. A
// packet of QoS 0 gets no acknowledgement, and one marked Ignore is not
// routed (nor retained). ErrRejectPacket would say the same, but the
// engine logs it at debug level with the whole packet as an argument,
// which allocated the packet again for every publish.
func deferredAck(pk packets.Packet) packets.Packet {
	pk.FixedHeader.Qos, pk.FixedHeader.Retain, pk.Ignore = 0, false, true
	return pk
}

// refuse answers a PUBLISH the core did not take: MQTT 5 gets the reason
// code in PUBACK/PUBREC; MQTT 3.1.1 has no negative acknowledgement, so the
// connection is closed [MQTT-3.3.5-2]. Never acknowledged as a success.
func (h *hook) refuse(cl *mochi.Client, pk packets.Packet, code packets.Code, err error) (packets.Packet, error) {
	h.s.countRefusal(causeOf(code))
	h.s.log.Info("mqtt: publish refused", "client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "bytes", len(pk.Payload), "reason", code.Reason, "err", err)
	if cl.Properties.ProtocolVersion == 5 {
		writeAck(cl, pk, code.Code, err.Error()) // [MQTT-3.4.2-1] [MQTT-3.5.2-1]
		return pk, packets.ErrRejectPacket
	}
	cl.Stop(code)
	return pk, packets.ErrRejectPacket
}

// retain keeps (or, with an empty payload, removes) the retained message
// of topic, in the engine's index and in Ferry's state, and waits for the
// state to be saved. props are the message's core properties: its MQTT 5
// properties go along to those who get it at SUBSCRIBE, and its expiry
// removes it [MQTT-3.3.2-5].
func (s *Server) retain(topic string, payload []byte, qos byte, props core.Properties) {
	r := retainedState{Payload: payload, QoS: qos, Props: keptProps(props), Created: time.Now().Unix()}
	if at, ok := expiresAt(props); ok {
		r.ExpiresAt = at
	}
	s.mu.Lock() // with the sweep of expired ones: see sweepRetained
	s.mq.Topics.RetainMessage(retainedPacket(topic, r))
	if r.ExpiresAt > 0 && len(payload) > 0 {
		s.expiring[topic] = r.ExpiresAt
	} else {
		delete(s.expiring, topic)
	}
	s.mu.Unlock()
	gen := s.state.update(func() (string, string) {
		if len(payload) == 0 { // [MQTT-3.3.1-6]
			if _, ok := s.state.retained[topic]; !ok {
				return "", ""
			}
			delete(s.state.retained, topic)
			return "", topic
		}
		s.state.retained[topic] = r
		return "", topic
	})
	_ = s.state.wait(s.ctx, gen)
}

// OnPacketRead takes the acknowledgements of Ferry's own deliveries
// (PUBACK, PUBREC); the engine sees them too and ignores the packet ids it
// does not know.
func (h *hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if err := h.s.topicLimit(pk.TopicName); err != nil {
			return h.refuseTopic(cl, pk, err)
		}
		if strings.HasPrefix(pk.TopicName, "$") {
			// Here, not in OnPublish: the engine drops a PUBLISH to $SYS
			// unanswered before OnPublish, and a 3.1.1 client would wait
			// for its PUBACK forever.
			return h.refuseReserved(cl, pk), nil
		}
	case packets.Puback:
		if ss := h.s.session(cl); ss != nil {
			ss.puback(pk.PacketID)
		}
	case packets.Pubrec:
		if ss := h.s.session(cl); ss != nil {
			ss.pubrec(pk.PacketID, pk.ReasonCode >= packets.ErrUnspecifiedError.Code)
		}
	}
	return pk, nil
}

// refuseTopic refuses a PUBLISH whose topic is over the topic limits
// before the engine or the core do any work on it: MQTT 5 gets PUBACK or
// PUBREC 0x90 (topic name invalid) with the reason, a QoS 0 publish is
// dropped, and MQTT 3.1.1, which has no negative acknowledgement, has its
// connection closed [MQTT-3.3.5-2]. The engine is handed the packet under a
// $SYS topic, which it drops unanswered.
func (h *hook) refuseTopic(cl *mochi.Client, pk packets.Packet, err error) (packets.Packet, error) {
	s := h.s
	s.countRefusal(causeTopic)
	s.limitHit(hit(err), err, "client", cl.ID, "remote", cl.Net.Remote, "qos", pk.FixedHeader.Qos)
	if cl.Properties.ProtocolVersion != 5 {
		return pk, packets.ErrRejectPacket // the engine ends the connection
	}
	writeAck(cl, pk, packets.ErrTopicNameInvalid.Code, "topic name "+err.Error()) // [MQTT-3.4.2-1] [MQTT-3.5.2-1]
	pk.TopicName = "$SYS/ferry/refused"
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	return pk, nil
}

// OnQosComplete ends the persisted QoS 2 exchanges: PUBREL for a publish
// received, PUBCOMP for a delivery.
func (h *hook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	typ := pk.FixedHeader.Type
	if typ != packets.Pubrel && typ != packets.Pubcomp {
		return
	}
	st := h.s.state
	st.update(func() (string, string) {
		s := st.sessions[cl.ID]
		if s == nil {
			return "", ""
		}
		list := &s.QoS2In
		if typ == packets.Pubcomp {
			list = &s.QoS2Out
		}
		for i, id := range *list {
			if id == pk.PacketID {
				*list = append((*list)[:i], (*list)[i+1:]...)
				return cl.ID, ""
			}
		}
		return "", ""
	})
}

// OnWill publishes a will through the core (now, or after its delay unless
// the client comes back), and hands the engine a will that reaches nobody.
func (h *hook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	s := h.s
	var props *packets.Properties
	if ss := s.session(cl); ss != nil {
		props = ss.willProps
	}
	w := willOf(will, props)
	if w != nil && strings.HasPrefix(w.Topic, "$") {
		s.log.Info("mqtt: will on a reserved topic dropped", "client", cl.ID, "topic", clip(w.Topic))
		w = nil
	}
	if w != nil {
		if w.Delay == 0 {
			s.publishWill(cl.ID, w)
		} else {
			s.mu.Lock()
			if t := s.wills[cl.ID]; t != nil {
				t.Stop()
			}
			s.wills[cl.ID] = time.AfterFunc(time.Duration(w.Delay)*time.Second, func() {
				s.mu.Lock()
				delete(s.wills, cl.ID)
				s.mu.Unlock()
				s.publishWill(cl.ID, w)
			})
			s.mu.Unlock()
		}
	}
	return mochi.Will{TopicName: "$ferry/void", Flag: 0}, nil
}

func (s *Server) publishWill(client string, w *willState) {
	props := map[string]string{propQoS: string('0' + w.QoS), propClient: client}
	maps.Copy(props, w.User)
	maps.Copy(props, w.Props)
	if w.Retain {
		props[propRetain] = "1"
	}
	if w.Expiry > 0 { // counted from the will's publication
		props[propExpiresAt] = strconv.FormatInt(time.Now().Add(time.Duration(w.Expiry)*time.Second).UnixMilli(), 10)
	}
	cp := core.PropertiesOf(props) // the core does not change a message's properties: retain keeps them too
	topic, subject, err := s.mapper.toCore(w.Topic)
	if err == nil {
		_, err = s.core.Publish(context.Background(), &core.Message{Topic: topic, Subject: subject, Body: w.Payload, Properties: cp},
			core.PublishOptions{Queue: core.QueueAuto, ShardKey: w.Topic})
	}
	if err != nil {
		s.log.Warn("mqtt: will message not published", "client", client, "topic", w.Topic, "err", err)
		return
	}
	if w.Retain {
		s.retain(w.Topic, w.Payload, w.QoS, cp)
	}
	s.state.update(func() (string, string) {
		if st := s.state.sessions[client]; st != nil && st.Will != nil {
			st.Will = nil
			return client, ""
		}
		return "", ""
	})
}

// fireCrashWills publishes the wills of the persistent sessions that were
// connected when Ferry stopped without closing them: their connections
// ended without a DISCONNECT.
func (s *Server) fireCrashWills() {
	for _, st := range s.state.allSessions() {
		if st.Connected && st.Will != nil {
			s.publishWill(st.ID, st.Will)
		}
	}
}

// The engine's storage interface: at start it gets back the sessions, their
// subscriptions, the QoS 2 exchanges in progress and the retained messages.

func (h *hook) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	for _, st := range h.s.state.allSessions() {
		c := storage.Client{ID: st.ID, Username: []byte(st.Username), ProtocolVersion: st.Version, Listener: "tcp"}
		if st.Version == 5 {
			c.Properties.SessionExpiryInterval, c.Properties.SessionExpiryIntervalFlag = st.Expiry, true
		}
		out = append(out, c)
	}
	return out, nil
}

func (h *hook) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	for _, st := range h.s.state.allSessions() {
		for _, sub := range st.Subs {
			out = append(out, storage.Subscription{Client: st.ID, Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
				RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.ID})
		}
	}
	return out, nil
}

func (h *hook) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	now := time.Now().Unix()
	for _, st := range h.s.state.allSessions() {
		for _, id := range st.QoS2In {
			out = append(out, storage.Message{Client: st.ID, PacketID: id, Created: now,
				FixedHeader: packets.FixedHeader{Type: packets.Pubrec}})
		}
		for _, id := range st.QoS2Out {
			out = append(out, storage.Message{Client: st.ID, PacketID: id, Created: now,
				FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}})
		}
	}
	return out, nil
}

// loadRetained hands the engine the retained messages kept in Ferry's
// state, before it serves: directly rather than through its storage
// interface, whose messages cannot carry an expiry time.
func (s *Server) loadRetained() {
	st := s.state
	st.mu.Lock()
	defer st.mu.Unlock()
	for topic, r := range st.retained {
		s.mq.Topics.RetainMessage(retainedPacket(topic, r))
		if r.ExpiresAt > 0 {
			s.expiring[topic] = r.ExpiresAt
		}
	}
}

// sweepRetained removes the retained messages whose expiry has passed,
// from the engine and from Ferry's state. The engine removes them itself
// only once a second and in whole seconds, so a SUBSCRIBE in between would
// get a message already expired; OnSubscribe sweeps first.
func (s *Server) sweepRetained() {
	now := time.Now().UnixMilli()
	s.mu.Lock()
	if len(s.expiring) == 0 {
		s.mu.Unlock()
		return
	}
	var gone []string
	for topic, at := range s.expiring {
		if at <= now {
			s.mq.Topics.Retained.Delete(topic)
			delete(s.expiring, topic)
			gone = append(gone, topic)
		}
	}
	s.mu.Unlock()
	for _, topic := range gone {
		s.dropExpiredRetained(topic, now)
	}
}

// dropExpiredRetained deletes topic's retained record if it has expired
// by now (a newer one, retained since, stays).
func (s *Server) dropExpiredRetained(topic string, now int64) {
	st := s.state
	st.update(func() (string, string) {
		r, ok := st.retained[topic]
		if !ok || r.ExpiresAt == 0 || r.ExpiresAt > now {
			return "", ""
		}
		delete(st.retained, topic)
		return "", topic
	})
}

// retainedPacket is the PUBLISH the engine sends of a retained message to
// those who subscribe.
func retainedPacket(topic string, r retainedState) packets.Packet {
	props := maps.Clone(r.Props)
	if props == nil {
		props = map[string]string{}
	}
	maps.Copy(props, r.User) // records written before Props
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: r.QoS},
		TopicName: topic, Payload: r.Payload, Created: r.Created,
		Properties: outProperties(core.PropertiesOf(props))}
	if r.ExpiresAt > 0 {
		// The engine counts whole seconds and sends what is left of them:
		// rounded down, it never gives more time than was asked.
		pk.Expiry = r.ExpiresAt / 1000
		pk.ProtocolVersion = 5 // the engine expires only MQTT 5 messages
	}
	return pk
}

// OnRetainedExpired drops a retained message the engine found expired.
func (h *hook) OnRetainedExpired(topic string) {
	h.s.dropExpiredRetained(topic, time.Now().UnixMilli())
}

func fromSubscription(sub packets.Subscription) subState {
	return subState{Filter: sub.Filter, QoS: sub.Qos, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
		RetainHandling: sub.RetainHandling, ID: sub.Identifier}
}

func subList(m map[string]subState) []subState {
	out := make([]subState, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return out
}

// willOf is what Ferry keeps of a will: the engine's view of it and the
// will properties of the CONNECT (content type, response topic,
// correlation data, payload format, message expiry), which the engine
// does not keep.
func willOf(w mochi.Will, props *packets.Properties) *willState {
	if w.Flag == 0 || w.TopicName == "" {
		return nil
	}
	if props == nil {
		props = &packets.Properties{}
	}
	mp := map[string]string{}
	addMQTTProps(func(k, v string) { mp[k] = v }, *props)
	if len(mp) == 0 {
		mp = nil
	}
	return &willState{Topic: w.TopicName, Payload: w.Payload, QoS: w.Qos, Retain: w.Retain, Delay: w.WillDelayInterval,
		User: userMap(w.User), Props: mp, Expiry: props.MessageExpiryInterval}
}

// willProps returns the will properties of a CONNECT (empty under 3.1.1),
// or nil when it has no will.
func willProps(pk packets.Packet) *packets.Properties {
	if !pk.Connect.WillFlag {
		return nil
	}
	p := pk.Connect.WillProperties
	return &p
}

func userMap(u []packets.UserProperty) map[string]string {
	if len(u) == 0 {
		return nil
	}
	m := make(map[string]string, len(u))
	for _, p := range u {
		m[p.Key] = p.Val
	}
	return m
}
