package native

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// propertiesViaMap is what appendProperties writes, the plain way: the
// properties as a map, TAGS and KEYS set over them, encoded.
func propertiesViaMap(m *core.Message) string {
	props := maps.Clone(m.Properties)
	if props == nil {
		props = map[string]string{}
	}
	if m.Subject != "" {
		props[propTags] = m.Subject
	}
	keys := m.Keys
	if id := m.Properties[propUniqKey]; id != "" && slices.Contains(keys, id) {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == id })
	}
	if len(keys) > 0 {
		props[propKeys] = strings.Join(keys, " ")
	}
	return remoting.EncodeProperties(props)
}

func TestAppendPropertiesAsTheMapWould(t *testing.T) {
	many := map[string]string{}
	for i := range 40 { // more names than appendProperties keeps on its stack
		many[strings.Repeat("p", i+1)] = "v"
	}
	for _, m := range []*core.Message{
		{},
		{Subject: "tag"},
		{Keys: []string{"a", "b"}},
		{Keys: []string{"ID", "a", "ID"}, Properties: map[string]string{propUniqKey: "ID"}},
		{Keys: []string{"ID"}, Properties: map[string]string{propUniqKey: "ID", "x": "1"}},
		{Keys: []string{"", "a"}},
		{Subject: "t", Keys: []string{"k"}, Properties: map[string]string{propTags: "old", propKeys: "old", "z": "", "a": "1"}},
		{Properties: map[string]string{propTags: "kept", propKeys: "kept too"}},
		{Subject: "s", Properties: many},
	} {
		want := propertiesViaMap(m)
		got := appendProperties([]byte("prefix"), m)
		if string(got[:6]) != "prefix" || int(got[6])<<8|int(got[7]) != len(want) || string(got[8:]) != want {
			t.Errorf("message %+v: got %q, want length %d and %q", m, got, len(want), want)
		}
	}
}
