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

// maxPresizedProperties bounds PropertiesSize; more properties than that
// grow what holds them as they are decoded.
const maxPresizedProperties = 64

// PropertiesSize is the room to make for the properties of s, once: a pair
// is kept only with a name separator, so their count bounds it (the value
// separators could be many more, in a frame a sender filled with them),
// capped so that a header of name separators alone, a few bytes each,
// does not size a huge map or list.
func PropertiesSize(s string) int {
	return min(strings.Count(s, string(propNameSep)), maxPresizedProperties)
}

// CutProperty cuts the first pair off s, "name\x01value\x02…": its name
// and value, slices of s, and the pairs after it. name is "" for a pair
// without a name, which a decoder drops.
func CutProperty(s string) (name, value, rest string) {
	kv, rest, _ := strings.Cut(s, string(propValueSep))
	if k, v, ok := strings.Cut(kv, string(propNameSep)); ok {
		return k, v, rest
	}
	return "", "", rest
}

// DecodeProperties decodes "name\x01value\x02…"; pairs without a name are
// dropped. It returns nil for "".
func DecodeProperties(s string) map[string]string {
	if s == "" {
		return nil
	}
	p := make(map[string]string, PropertiesSize(s))
	for s != "" {
		var k, v string
		if k, v, s = CutProperty(s); k != "" {
			p[k] = v
		}
	}
	return p
}
