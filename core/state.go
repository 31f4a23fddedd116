package core

import "fmt"

// State is a front-end's namespace of small documents kept beside the
// broker's own (MQTT keeps its sessions and retained messages there). A
// document is JSON, saved whole and atomically: a reader sees the old one
// or the new one, never half of one, and its checksum catches what the
// disk gets wrong. Save returns once the document is on disk. Documents
// are for state that changes by whole values; messages go in topics.
type State struct {
	b  *Broker
	ns string
}

// State returns the state namespace ns: 1..32 letters and digits, the
// front-end's name ("mqtt"). Each namespace's documents are its own; none
// reaches the core's.
func (b *Broker) State(ns string) (*State, error) {
	if ns == "" || len(ns) > 32 {
		return nil, fmt.Errorf("%w: state namespace %q: want 1..32 letters and digits", ErrInvalidName, ns)
	}
	for _, c := range ns {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return nil, fmt.Errorf("%w: state namespace %q: %q is not a letter or digit", ErrInvalidName, ns, c)
		}
	}
	return &State{b: b, ns: ns}, nil
}

// Load reads the document name into v (as encoding/json does) and reports
// whether there is one. A name is 1..64 letters, digits, '-', '_' or '.'.
func (s *State) Load(name string, v any) (bool, error) {
	doc, err := s.doc(name)
	if err != nil {
		return false, err
	}
	return s.b.store.LoadMeta(doc, v)
}

// Save stores v (as encoding/json encodes it; a json.RawMessage as it is)
// as the document name, atomically, and returns once it is on disk.
func (s *State) Save(name string, v any) error {
	doc, err := s.doc(name)
	if err != nil {
		return err
	}
	return s.b.store.SaveMeta(doc, v)
}

// doc is the store's name of a document: the namespace, '-', the name. The
// core's own documents have no '-', so no namespace reaches them.
func (s *State) doc(name string) (string, error) {
	if name == "" || len(name) > 64 {
		return "", fmt.Errorf("%w: state document %q: want 1..64 characters", ErrInvalidName, name)
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("%w: state document %q: %q is not allowed", ErrInvalidName, name, c)
		}
	}
	return s.ns + "-" + name, nil
}
