package remoting

import (
	"slices"
	"strings"
)

// RocketMQ's message properties travel as "name\x01value\x02…": in the
// send header's properties field and in stored messages.
const (
	propNameSep  = '\x01'
	propValueSep = '\x02'
)

// EncodeProperties encodes p, names sorted so that equal maps encode alike.
func EncodeProperties(p map[string]string) string {
	names := make([]string, 0, len(p))
	n := 0
	for k, v := range p {
		names = append(names, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(names)
	var b strings.Builder
	b.Grow(n)
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(propNameSep)
		b.WriteString(p[k])
		b.WriteByte(propValueSep)
	}
	return b.String()
}

// maxPresizedProperties bounds the map DecodeProperties sizes up front;
// more properties than that grow it as they are decoded.
const maxPresizedProperties = 64

// DecodeProperties decodes "name\x01value\x02…"; pairs without a name are
// dropped. It returns nil for "".
func DecodeProperties(s string) map[string]string {
	if s == "" {
		return nil
	}
	// Sized by the name separators, since no pair is kept without one, and
	// capped: a frame of separators alone must not size a huge map.
	p := make(map[string]string, min(strings.Count(s, string(propNameSep)), maxPresizedProperties))
	for len(s) > 0 {
		var kv string
		kv, s, _ = strings.Cut(s, string(propValueSep))
		if k, v, ok := strings.Cut(kv, string(propNameSep)); ok && k != "" {
			p[k] = v
		}
	}
	return p
}
