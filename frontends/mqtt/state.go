package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/ferrymq/ferry/core"
)

// sessionState is what Ferry keeps of a persistent MQTT session across
// restarts; the messages themselves are in the core, read through the
// session's consumer groups.
type sessionState struct {
	ID        string     `json:"id"`
	Username  string     `json:"user,omitempty"`
	Version   byte       `json:"v"`
	Expiry    uint32     `json:"expiry"` // seconds after disconnect
	Connected bool       `json:"connected,omitempty"`
	Left      int64      `json:"left,omitempty"` // unix seconds of the disconnect
	Subs      []subState `json:"subs,omitempty"`
	Will      *willState `json:"will,omitempty"`
	// QoS2In are packet ids of QoS 2 publishes stored and PUBREC'd, whose
	// PUBREL has not come: a resent PUBLISH with one of them is not stored
	// again [MQTT-4.3.3-10].
	QoS2In []uint16 `json:"q2in,omitempty"`
	// QoS2Out are packet ids of QoS 2 deliveries the client PUBREC'd, whose
	// PUBCOMP has not come: PUBREL is sent again after a restart.
	QoS2Out []uint16 `json:"q2out,omitempty"`
}

type subState struct {
	Filter            string `json:"f"`
	QoS               byte   `json:"q"`
	NoLocal           bool   `json:"nl,omitempty"`
	RetainAsPublished bool   `json:"rap,omitempty"`
	RetainHandling    byte   `json:"rh,omitempty"`
	ID                int    `json:"id,omitempty"`
	At                int64  `json:"at"` // unix milliseconds of the SUBSCRIBE: where a topic created later starts
}

type willState struct {
	Topic   string            `json:"topic"`
	Payload []byte            `json:"payload,omitempty"`
	QoS     byte              `json:"q"`
	Retain  bool              `json:"retain,omitempty"`
	Delay   uint32            `json:"delay,omitempty"`
	User    map[string]string `json:"user,omitempty"`
	Props   map[string]string `json:"props,omitempty"`  // its MQTT 5 will properties, as core properties
	Expiry  uint32            `json:"expiry,omitempty"` // its Message Expiry Interval, in seconds
}

type retainedState struct {
	Payload []byte            `json:"payload"`
	QoS     byte              `json:"q"`
	User    map[string]string `json:"user,omitempty"`  // records written before Props
	Props   map[string]string `json:"props,omitempty"` // MQTT 5 and user properties, as core properties
	Created int64             `json:"created"`
	// ExpiresAt is when its Message Expiry Interval ends, unix
	// milliseconds; 0: never.
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// stateStore keeps the sessions and the retained messages in the core's
// state namespace "mqtt", which the core keeps in the broker's log: a
// record per session ("s/CLIENT-ID") and per retained message
// ("r/TOPIC"). Writes are group-committed: a change marks its key and bumps
// gen, one writer goroutine writes the keys that changed, and callers that
// must not answer before their change is durable (a SUBACK, a PUBREC) wait
// for a write that covers their gen.
type stateStore struct {
	docs   *core.State
	logger *slog.Logger

	mu        sync.Mutex
	sessions  map[string]*sessionState
	retained  map[string]retainedState
	dirtySess map[string]struct{} // client ids whose session changed
	dirtyRet  map[string]struct{} // topics whose retained message changed
	gen       uint64              // bumped by every change
	saved     uint64              // the gen the last save covered
	err       error               // of the last save
	done      chan struct{}
	kick      chan struct{}
	closed    bool
	wg        sync.WaitGroup
}

const (
	stateNamespace = "mqtt"
	sessionPrefix  = "s/"
	retainedPrefix = "r/"
	// The layout before a record per key: one value for all sessions and
	// one for all retained messages, converted at start.
	oldSessions = "sessions"
	oldRetained = "retained"
)

func openState(b *core.Broker, logger *slog.Logger) (*stateStore, error) {
	docs, err := b.State(stateNamespace)
	if err != nil {
		return nil, err
	}
	st := &stateStore{docs: docs, logger: logger, sessions: map[string]*sessionState{},
		retained: map[string]retainedState{}, dirtySess: map[string]struct{}{}, dirtyRet: map[string]struct{}{},
		done: make(chan struct{}), kick: make(chan struct{}, 1)}
	var old []string
	err = docs.Each(func(key string, value json.RawMessage) error {
		switch {
		case strings.HasPrefix(key, sessionPrefix):
			s := &sessionState{}
			if err := json.Unmarshal(value, s); err != nil {
				return fmt.Errorf("mqtt: load session %q: %w", key, err)
			}
			st.sessions[strings.TrimPrefix(key, sessionPrefix)] = s
		case strings.HasPrefix(key, retainedPrefix):
			var r retainedState
			if err := json.Unmarshal(value, &r); err != nil {
				return fmt.Errorf("mqtt: load retained message %q: %w", key, err)
			}
			st.retained[strings.TrimPrefix(key, retainedPrefix)] = r
		case key == oldSessions:
			var m map[string]*sessionState
			if err := json.Unmarshal(value, &m); err != nil {
				return fmt.Errorf("mqtt: load sessions: %w", err)
			}
			maps.Copy(st.sessions, m)
			old = append(old, key)
		case key == oldRetained:
			var m map[string]retainedState
			if err := json.Unmarshal(value, &m); err != nil {
				return fmt.Errorf("mqtt: load retained messages: %w", err)
			}
			maps.Copy(st.retained, m)
			old = append(old, key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		if err := st.convert(old); err != nil {
			return nil, err
		}
	}
	st.wg.Add(1)
	go st.writer()
	return st, nil
}

// convert writes the sessions and retained messages of the older layout as
// a record each, and removes the old values, in one write.
func (st *stateStore) convert(old []string) error {
	var changes []core.Change
	for id, s := range st.sessions {
		changes = append(changes, core.Change{Key: sessionPrefix + id, Value: s})
	}
	for topic, r := range st.retained {
		changes = append(changes, core.Change{Key: retainedPrefix + topic, Value: r})
	}
	for _, key := range old {
		changes = append(changes, core.Change{Key: key, Delete: true})
	}
	if err := st.docs.Apply(context.Background(), changes...); err != nil {
		return fmt.Errorf("mqtt: convert sessions and retained messages to a record each: %w", err)
	}
	st.logger.Info("mqtt: sessions and retained messages are now a record each in the broker's log",
		"sessions", len(st.sessions), "retained", len(st.retained))
	return nil
}

// update runs fn under the lock; fn returns the client id whose session it
// changed and the topic whose retained message it changed ("" for none).
// It returns the gen to wait for.
func (st *stateStore) update(fn func() (session, retained string)) uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, r := fn()
	if s == "" && r == "" {
		return st.saved
	}
	if s != "" {
		st.dirtySess[s] = struct{}{}
	}
	if r != "" {
		st.dirtyRet[r] = struct{}{}
	}
	st.gen++
	if !st.closed {
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
	return st.gen
}

// wait blocks until the changes up to gen are saved, and returns the error
// of the save that covered them.
func (st *stateStore) wait(ctx context.Context, gen uint64) error {
	for {
		st.mu.Lock()
		saved, err, done, closed := st.saved, st.err, st.done, st.closed
		st.mu.Unlock()
		if saved >= gen {
			return err
		}
		if closed {
			return core.ErrClosed
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (st *stateStore) writer() {
	defer st.wg.Done()
	for range st.kick {
		st.saveOnce()
	}
}

func (st *stateStore) saveOnce() {
	st.mu.Lock()
	gen, sess, ret := st.gen, st.dirtySess, st.dirtyRet
	st.dirtySess, st.dirtyRet = map[string]struct{}{}, map[string]struct{}{}
	changes := make([]core.Change, 0, len(sess)+len(ret))
	var err error
	for id := range sess {
		c := core.Change{Key: sessionPrefix + id, Delete: true}
		if s := st.sessions[id]; s != nil {
			var raw []byte
			if raw, err = json.Marshal(s); err != nil { // now: the session changes in place
				break
			}
			c.Value, c.Delete = json.RawMessage(raw), false
		}
		changes = append(changes, c)
	}
	for topic := range ret {
		c := core.Change{Key: retainedPrefix + topic, Delete: true}
		if r, ok := st.retained[topic]; ok {
			c.Value, c.Delete = r, false
		}
		changes = append(changes, c)
	}
	st.mu.Unlock()
	if err == nil && len(changes) > 0 {
		err = st.docs.Apply(context.Background(), changes...)
	}
	if err != nil {
		st.logger.Error("mqtt: saving session state failed; will retry on the next change", "err", err)
	}
	st.mu.Lock()
	if err != nil { // written again with the next change
		maps.Copy(st.dirtySess, sess)
		maps.Copy(st.dirtyRet, ret)
	}
	st.saved, st.err = gen, err
	close(st.done)
	st.done = make(chan struct{})
	st.mu.Unlock()
}

// close saves what is left and stops the writer.
func (st *stateStore) close() {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	st.mu.Unlock()
	close(st.kick)
	st.wg.Wait()
	st.saveOnce()
}

// session returns a copy of a session's state.
func (st *stateStore) session(id string) (sessionState, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.sessions[id]
	if !ok {
		return sessionState{}, false
	}
	return s.clone(), true
}

// allSessions returns copies of every session's state.
func (st *stateStore) allSessions() []sessionState {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]sessionState, 0, len(st.sessions))
	for _, s := range st.sessions {
		out = append(out, s.clone())
	}
	return out
}

func (s *sessionState) clone() sessionState {
	c := *s
	c.Subs = slices.Clone(s.Subs)
	c.QoS2In = slices.Clone(s.QoS2In)
	c.QoS2Out = slices.Clone(s.QoS2Out)
	return c
}
