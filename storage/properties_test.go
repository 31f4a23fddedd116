package storage

import (
	"maps"
	"testing"
)

func TestProperties(t *testing.T) {
	var p Properties
	if v, ok := p.Lookup("a"); ok || v != "" || p.Get("a") != "" {
		t.Fatal("nil properties have a")
	}
	p.Set("a", "1")
	p.Set("b", "2")
	p.Set("a", "3") // replaces, keeps the place
	if len(p) != 2 || p[0] != (Property{"a", "3"}) || p[1] != (Property{"b", "2"}) {
		t.Fatalf("after sets: %v", p)
	}
	c := p.Clone(1)
	c.Set("c", "4")
	c.Del("a")
	if len(p) != 2 || p.Get("a") != "3" || p.Get("c") != "" {
		t.Fatalf("a clone's changes reached the original: %v", p)
	}
	if want := map[string]string{"b": "2", "c": "4"}; !maps.Equal(c.Map(), want) || len(c) != 2 {
		t.Fatalf("clone %v, want %v", c, want)
	}
	c.Del("missing")
	if len(c) != 2 {
		t.Fatalf("Del of a missing name changed %v", c)
	}
	n := 0
	for k, v := range p.All() {
		if p.Get(k) != v {
			t.Errorf("All yields %s=%s", k, v)
		}
		n++
		break // All stops when told
	}
	if n != 1 {
		t.Fatalf("All yielded %d before its stop", n)
	}
	if s := PropertiesOf(map[string]string{"z": "1", "a": "2", "m": "3"}); s[0].Name != "a" || s[1].Name != "m" || s[2].Name != "z" {
		t.Fatalf("PropertiesOf is not sorted: %v", s)
	}
	if PropertiesOf(nil) != nil || Properties(nil).Clone(0) != nil || Properties(nil).Map() != nil {
		t.Fatal("no properties made some")
	}
}

// A record's properties read back as they were written, whichever their
// order, and records keep the format: count, then length-prefixed pairs.
func TestPropertiesRecordRoundTrip(t *testing.T) {
	m := Message{Topic: "t", Properties: Properties{{"b", "2"}, {"a", ""}, {"long", string(make([]byte, 300))}}, Body: []byte("x")}
	size, err := m.encodedSize(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, size)
	m.encode(rec)
	for _, slab := range []*slabs{nil, {}} {
		var got Message
		if err := decodeRecord(rec, &got, slab); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got.Properties.Map(), m.Properties.Map()) || len(got.Properties) != 3 {
			t.Fatalf("read back %v, wrote %v", got.Properties, m.Properties)
		}
	}
}

// Dedup keeps each name once with its last value, by comparison for a
// handful and through a map for many.
func TestPropertiesDedup(t *testing.T) {
	for _, n := range []int{0, 1, 5, dedupByMap, dedupByMap + 1, 1000} {
		var p Properties
		want := map[string]string{}
		for i := range n {
			k := string(rune('a' + i%7))
			if i%3 == 0 {
				k = string(rune('A'+i%26)) + string(rune('0'+i%10))
			}
			p = append(p, Property{k, string(rune('0' + i%10))})
			want[k] = string(rune('0' + i%10))
		}
		p.Dedup()
		if len(p) != len(want) || !maps.Equal(p.Map(), want) {
			t.Errorf("%d appended: dedup kept %d, %v; want %v", n, len(p), p, want)
		}
	}
}
