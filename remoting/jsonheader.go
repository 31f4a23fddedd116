package remoting

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// jsonHeader is the JSON header as RocketMQ's clients write it; unknown
// fields (serializeTypeCurrentRPC, …) are ignored. appendJSONHeader writes
// the same fields in the same order.
type jsonHeader struct {
	Code      int16             `json:"code"`
	Language  string            `json:"language"`
	Version   int16             `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int32             `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields,omitempty"`
}

// decodeJSONHeader decodes a JSON header. Its ext fields come through a
// map (the last of a repeated name wins), sorted by name.
func decodeJSONHeader(b []byte) (*Command, error) {
	var h jsonHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: JSON header: %v", ErrMalformed, err)
	}
	c := &Command{Code: h.Code, Language: h.Language, Version: h.Version, Opaque: h.Opaque, Flag: h.Flag, Remark: h.Remark}
	if len(h.ExtFields) > 0 {
		c.Fields = make([]Field, 0, len(h.ExtFields))
		for k, v := range h.ExtFields {
			c.Fields = append(c.Fields, Field{k, v})
		}
		slices.SortFunc(c.Fields, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
	}
	return c, nil
}

// appendJSONHeader appends c's JSON header to b: the bytes encoding/json
// writes for a jsonHeader whose extFields are a map (the ext fields sorted
// by name, each once with its last value), without its reflection.
func appendJSONHeader(b []byte, c *Command) []byte {
	// Room for the header unescaped: 113 bytes of names, punctuation and
	// the longest numbers, and 6 of quotes, colon and comma a field.
	n := 113 + len(c.Language) + len(c.Remark)
	for _, f := range c.Fields {
		n += 6 + len(f.Name) + len(f.Value)
	}
	b = slices.Grow(b, n)
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(c.Code), 10)
	b = append(b, `,"language":`...)
	b = appendJSONString(b, c.Language)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(c.Version), 10)
	b = append(b, `,"opaque":`...)
	b = strconv.AppendInt(b, int64(c.Opaque), 10)
	b = append(b, `,"flag":`...)
	b = strconv.AppendInt(b, int64(c.Flag), 10)
	if c.Remark != "" {
		b = append(b, `,"remark":`...)
		b = appendJSONString(b, c.Remark)
	}
	if len(c.Fields) > 0 {
		var arr [24]Field // a request's fields sort here, not on the heap
		b = append(b, `,"extFields":{`...)
		for i, f := range appendSorted(arr[:0], c.Fields) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, f.Name)
			b = append(b, ':')
			b = appendJSONString(b, f.Value)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string escaped as encoding/json's
// Marshal escapes it: quote, backslash and control bytes, the HTML
// characters <, > and &, U+2028 and U+2029; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
