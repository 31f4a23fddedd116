package storage

import (
	"iter"
	"maps"
	"slices"
)

// Property is one of a message's properties.
type Property struct{ Name, Value string }

// Properties are a message's properties: name and value pairs, each name
// once, in the order they were set (an order that means nothing). A list,
// not a map: a message has a handful, which a list holds in one allocation
// (or in a read's shared slab, or beside the message) and finds by a few
// comparisons, where a map costs two allocations, hashing, and a sort to
// encode in a stable order.
//
// Set and Del change the list in place: a message that takes another's
// properties and changes them clones them first.
type Properties []Property

// PropertiesOf makes properties of a map, names sorted.
func PropertiesOf(m map[string]string) Properties {
	if len(m) == 0 {
		return nil
	}
	p := make(Properties, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p = append(p, Property{k, m[k]})
	}
	return p
}

// Get returns a property's value, "" when absent.
func (p Properties) Get(name string) string {
	v, _ := p.Lookup(name)
	return v
}

// Lookup returns a property's value and whether p has it.
func (p Properties) Lookup(name string) (string, bool) {
	if i := p.index(name); i >= 0 {
		return p[i].Value, true
	}
	return "", false
}

// index is the position of name in p, or -1.
func (p Properties) index(name string) int {
	for i := range p {
		if p[i].Name == name {
			return i
		}
	}
	return -1
}

// Set sets a property: it replaces the value of name, or appends it.
func (p *Properties) Set(name, value string) {
	if i := p.index(name); i >= 0 {
		(*p)[i].Value = value
		return
	}
	*p = append(*p, Property{name, value})
}

// Dedup keeps each name once, with its last value: for a decoder that
// appends what it reads (a protocol's list, which may repeat a name) and
// dedups once, where a Set per property would compare each with all
// before it. Linear for a handful, through a map past dedupByMap.
func (p *Properties) Dedup() {
	s := *p
	var out Properties
	switch {
	case len(s) < 2:
		return
	case len(s) <= dedupByMap:
		out = s[:0]
		for i, kv := range s {
			if !slices.ContainsFunc(s[i+1:], func(o Property) bool { return o.Name == kv.Name }) {
				out = append(out, kv) // at or before i: what it overwrites was read
			}
		}
	default:
		last := make(map[string]int, len(s))
		for i, kv := range s {
			last[kv.Name] = i
		}
		if len(last) == len(s) {
			return
		}
		out = s[:0]
		for i, kv := range s {
			if last[kv.Name] == i {
				out = append(out, kv)
			}
		}
	}
	clear(s[len(out):])
	*p = out
}

// dedupByMap is the length past which Dedup finds repeats through a map.
const dedupByMap = 16

// Del removes a property, keeping the others' order.
func (p *Properties) Del(name string) {
	if i := p.index(name); i >= 0 {
		*p = slices.Delete(*p, i, i+1)
	}
}

// All yields the properties' names and values.
func (p Properties) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, kv := range p {
			if !yield(kv.Name, kv.Value) {
				return
			}
		}
	}
}

// Clone returns a copy of p that Set and Del may change, with room for
// extra more properties; nil for none and no room.
func (p Properties) Clone(extra int) Properties {
	if len(p)+extra == 0 {
		return nil
	}
	return append(make(Properties, 0, len(p)+extra), p...)
}

// Map returns the properties as a map, for callers that want one (JSON
// output, a protocol's header table); nil for none.
func (p Properties) Map() map[string]string {
	if len(p) == 0 {
		return nil
	}
	m := make(map[string]string, len(p))
	for _, kv := range p {
		m[kv.Name] = kv.Value
	}
	return m
}
