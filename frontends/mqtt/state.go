package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
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
}

type retainedState struct {
	Payload []byte            `json:"payload"`
	QoS     byte              `json:"q"`
	User    map[string]string `json:"user,omitempty"`
	Created int64             `json:"created"`
}

// stateStore keeps the sessions and the retained messages as two documents
// of the core's state namespace "mqtt" ("sessions", "retained"), each
// written atomically. Writes are group-committed: a change bumps gen, one writer
// goroutine saves what changed, and callers that must not answer before
// their change is durable (a SUBACK, a PUBREC) wait for a save that covers
// their gen.
type stateStore struct {
	docs   *core.State
	logger *slog.Logger

	mu       sync.Mutex
	sessions map[string]*sessionState
	retained map[string]retainedState
	dirty    [2]bool // sessions, retained
	gen      uint64  // bumped by every change
	saved    uint64  // the gen the last save covered
	err      error   // of the last save
	done     chan struct{}
	kick     chan struct{}
	closed   bool
	wg       sync.WaitGroup
}

const (
	stateNamespace = "mqtt"
	docSessions    = "sessions"
	docRetained    = "retained"
)

func openState(b *core.Broker, logger *slog.Logger) (*stateStore, error) {
	docs, err := b.State(stateNamespace)
	if err != nil {
		return nil, err
	}
	st := &stateStore{docs: docs, logger: logger, sessions: map[string]*sessionState{},
		retained: map[string]retainedState{}, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	if _, err := docs.Load(docSessions, &st.sessions); err != nil {
		return nil, fmt.Errorf("mqtt: load sessions: %w", err)
	}
	if _, err := docs.Load(docRetained, &st.retained); err != nil {
		return nil, fmt.Errorf("mqtt: load retained messages: %w", err)
	}
	if st.sessions == nil {
		st.sessions = map[string]*sessionState{}
	}
	if st.retained == nil {
		st.retained = map[string]retainedState{}
	}
	st.wg.Add(1)
	go st.writer()
	return st, nil
}

// update runs fn under the lock; fn returns which documents it changed. It
// returns the gen to wait for.
func (st *stateStore) update(fn func() (sessions, retained bool)) uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, r := fn()
	if !s && !r {
		return st.saved
	}
	st.dirty[0] = st.dirty[0] || s
	st.dirty[1] = st.dirty[1] || r
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
	gen, dirty := st.gen, st.dirty
	st.dirty = [2]bool{}
	var docs [2]json.RawMessage
	var err error
	if dirty[0] {
		docs[0], err = json.Marshal(st.sessions)
	}
	if dirty[1] && err == nil {
		docs[1], err = json.Marshal(st.retained)
	}
	st.mu.Unlock()
	for i, name := range []string{docSessions, docRetained} {
		if err == nil && dirty[i] {
			err = st.docs.Save(name, docs[i])
		}
	}
	if err != nil {
		st.logger.Error("mqtt: saving session state failed; will retry on the next change", "err", err)
		st.mu.Lock()
		st.dirty[0], st.dirty[1] = st.dirty[0] || dirty[0], st.dirty[1] || dirty[1]
		st.mu.Unlock()
	}
	st.mu.Lock()
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
