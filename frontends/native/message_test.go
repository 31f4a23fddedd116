package native

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// wireProperties is the reference appendProperties writes in place: m's
// properties in a map, TAGS and KEYS set over them, encoded by
// remoting.EncodeProperties.
func wireProperties(m *core.Message) string {
	props := m.Properties.Map()
	if props == nil {
		props = map[string]string{}
	}
	if m.Subject != "" {
		props[propTags] = m.Subject
	}
	keys := m.Keys
	if id := m.Properties.Get(propUniqKey); id != "" && slices.Contains(keys, id) {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == id })
	}
	if len(keys) > 0 {
		props[propKeys] = strings.Join(keys, " ")
	}
	return remoting.EncodeProperties(props)
}

func TestAppendMessageProperties(t *testing.T) {
	many := map[string]string{propUniqKey: "ID"}
	for i := range 20 {
		many[fmt.Sprint("p", i)] = fmt.Sprint(i)
	}
	for name, m := range map[string]*core.Message{
		"bare":                   {Topic: "t", Body: []byte("b")},
		"subject":                {Topic: "t", Subject: "tag"},
		"subject over TAGS":      {Topic: "t", Subject: "tag", Properties: core.PropertiesOf(map[string]string{propTags: "old", "a": "1"})},
		"TAGS without a subject": {Topic: "t", Properties: core.PropertiesOf(map[string]string{propTags: "kept"})},
		"indexed uniq key":       {Topic: "t", Keys: []string{"k1", "ID", "k2"}, Properties: core.PropertiesOf(map[string]string{propUniqKey: "ID"})},
		"only the uniq key":      {Topic: "t", Keys: []string{"ID"}, Properties: core.PropertiesOf(map[string]string{propUniqKey: "ID", propKeys: "kept"})},
		"keys over KEYS":         {Topic: "t", Keys: []string{"a", "b"}, Properties: core.PropertiesOf(map[string]string{propKeys: "old"})},
		"keys, no uniq key":      {Topic: "t", Keys: []string{"", "x"}},
		"many":                   {Topic: "t", Subject: "s", Keys: []string{"ID", "k"}, Properties: core.PropertiesOf(many)},
	} {
		want := wireProperties(m)
		if got := string(appendProperties(nil, m)); got != want {
			t.Errorf("%s: properties %q, want %q", name, got, want)
		}
		b := appendMessage([]byte("prefix"), m, [8]byte{127, 0, 0, 1, 0, 0, 0x27, 0x11})[len("prefix"):]
		if size := int(binary.BigEndian.Uint32(b)); size != len(b) {
			t.Errorf("%s: size word %d, message of %d bytes", name, size, len(b))
		}
		at := len(b) - len(want) - 2
		if plen := int(binary.BigEndian.Uint16(b[at:])); plen != len(want) || string(b[at+2:]) != want {
			t.Errorf("%s: properties length %d, %q; want %d, %q", name, plen, b[at+2:], len(want), want)
		}
	}
	m := &core.Message{Topic: "t", Subject: "s", Keys: []string{"k", "ID"}, Properties: core.PropertiesOf(map[string]string{propUniqKey: "ID", "a": "1"})}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { appendMessage(buf, m, [8]byte{}) }); n != 0 {
		t.Errorf("appendMessage: %v allocations, want none", n)
	}
}

// sendHeader is the reference sendFields reads in one pass: one field of
// SEND_MESSAGE's header, or of SEND_MESSAGE_V2's one-letter one.
func sendHeader(req *remoting.Command, name, v2 string) string {
	if req.Code == remoting.SendMessage {
		return req.Ext(name)
	}
	if v, ok := req.Lookup(v2); ok {
		return v
	}
	return req.Ext(name)
}

// sendFields reads what sendHeader reads, field by field, for both
// headers, with repeated names and a V2 header that also carries full names.
func TestSendFieldsAsSendHeader(t *testing.T) {
	for _, req := range []*remoting.Command{
		remoting.NewRequest(remoting.SendMessage, remoting.Pairs("topic", "t", "queueId", "3", "b", "x", "properties", "A\x01b\x02", "queueId", "4"), nil),
		remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs("b", "t", "e", "2", "topic", "long", "g", "17", "m", "true", "d", "8", "i", "P\x01q\x02", "e", "5"), nil),
		remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs("topic", "only-long", "flag", "9"), nil),
		remoting.NewRequest(remoting.SendBatchMessage, remoting.Pairs("reconsumeTimes", "1", "j", "2", "f", "1"), nil),
	} {
		got := sendFields(req)
		for i, n := range sendFieldNames {
			if want := sendHeader(req, n[0], n[1]); got[i] != want {
				t.Errorf("code %d, field %s: sendFields %q, sendHeader %q", req.Code, n[0], got[i], want)
			}
		}
	}
}

// decodeProperties reads what remoting.DecodeProperties reads: a name's
// last value, no pair without a name; into the room it is given.
func TestDecodeProperties(t *testing.T) {
	for _, s := range []string{"", "a\x011\x02", "a\x011\x02b\x022\x02a\x013\x02\x01x\x02", "no separator", "k\x01v"} {
		room := make(core.Properties, 0, 4)
		got := decodeProperties(s, room)
		want := remoting.DecodeProperties(s)
		if len(got) != len(want) || (len(want) > 0 && !maps.Equal(got.Map(), want)) {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}
