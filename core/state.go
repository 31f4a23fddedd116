package core

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// State is a front-end's namespace of keyed values, kept in the commit log
// with the broker's own state (MQTT keeps a record per session and per
// retained message there). A value is JSON. A change returns once it is on
// disk; a replica, or the broker restarted on a copy of its log, has it.
// Values are for state that changes by whole values; messages go in topics.
type State struct {
	b      *Broker
	prefix string // "namespace/"
}

// coreNamespace is the broker's own namespace: no front-end reaches it.
const coreNamespace = "core"

// State returns the state namespace ns: 1..32 letters and digits, the
// front-end's name ("mqtt"). Each namespace's values are its own; none
// reaches another's or the core's.
func (b *Broker) State(ns string) (*State, error) {
	if !validNamespace(ns) {
		return nil, fmt.Errorf("%w: state namespace %q: want 1..32 letters and digits", ErrInvalidName, ns)
	}
	if ns == coreNamespace {
		return nil, fmt.Errorf("%w: state namespace %q is the core's own", ErrInvalidName, ns)
	}
	return &State{b: b, prefix: ns + "/"}, nil
}

func validNamespace(ns string) bool {
	if ns == "" || len(ns) > 32 {
		return false
	}
	for _, c := range ns {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Change is one change of a State: Value stored under Key (encoded as
// encoding/json does; a json.RawMessage as it is), or with Delete the key
// removed.
type Change struct {
	Key    string
	Value  any
	Delete bool
}

// Load reads the value of key into v (as encoding/json does) and reports
// whether there is one.
func (s *State) Load(key string, v any) (bool, error) {
	if err := checkStateKey(key); err != nil {
		return false, err
	}
	raw := s.b.state.get(s.prefix + key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("core: state %s%s: %w", s.prefix, key, err)
	}
	return true, nil
}

// Save stores v as the value of key and returns once it is on disk.
func (s *State) Save(key string, v any) error {
	return s.Apply(context.Background(), Change{Key: key, Value: v})
}

// Delete removes key and returns once that is on disk.
func (s *State) Delete(key string) error {
	return s.Apply(context.Background(), Change{Key: key, Delete: true})
}

// Apply makes changes in order, as one write, and returns once they are on
// disk. A change that sets a key to the value it has writes nothing.
func (s *State) Apply(ctx context.Context, changes ...Change) error {
	out := make([]stateChange, len(changes))
	for i, c := range changes {
		if err := checkStateKey(c.Key); err != nil {
			return err
		}
		out[i] = stateChange{key: s.prefix + c.Key, del: c.Delete}
		if !c.Delete {
			raw, err := json.Marshal(c.Value)
			if err != nil {
				return fmt.Errorf("core: state %s%s: %w", s.prefix, c.Key, err)
			}
			out[i].val = raw
		}
	}
	return s.b.state.write(ctx, out, true)
}

// Each calls fn with every key of the namespace and its value, in key
// order, and stops at fn's first error.
func (s *State) Each(fn func(key string, value json.RawMessage) error) error {
	return s.b.state.each(s.prefix, func(key string, val []byte) error {
		return fn(strings.TrimPrefix(key, s.prefix), val)
	})
}

// checkStateKey checks a front-end's key: 1 byte or more, and short enough
// for a record's subject with its namespace.
func checkStateKey(key string) error {
	if key == "" || len(key) > maxStateKey-64 {
		return fmt.Errorf("%w: state key of %d bytes: want 1..%d", ErrInvalidName, len(key), maxStateKey-64)
	}
	return nil
}
