package route

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// matches returns the subs Match reports, sorted.
func matches(tbl *Table[int], topic, subject string) []int {
	var got []int
	tbl.Match(topic, subject, func(s int) { got = append(got, s) })
	slices.Sort(got)
	return got
}

func TestTable(t *testing.T) {
	var tbl Table[int]
	add := func(topic, filter string, sub int) bool { return tbl.Add(topic, mustParse(t, filter), sub) }
	remove := func(topic, filter string, sub int) bool { return tbl.Remove(topic, mustParse(t, filter), sub) }

	add("dev", "*", 1)
	add("dev", "42/telemetry", 2)
	add("dev", "42/telemetry || 43/telemetry", 3)
	add("dev", "+/telemetry", 4)
	add("dev", "42/#", 5)
	add("dev", "43/+", 6)
	add("other", "*", 7)

	tests := []struct {
		topic, subject string
		want           []int
	}{
		{"dev", "42/telemetry", []int{1, 2, 3, 4, 5}},
		{"dev", "43/telemetry", []int{1, 3, 4, 6}},
		{"dev", "42", []int{1, 5}},
		{"dev", "", []int{1}},
		{"dev", "44/status", []int{1}},
		{"other", "42/telemetry", []int{7}},
		{"none", "42/telemetry", nil},
	}
	for _, tc := range tests {
		if got := matches(&tbl, tc.topic, tc.subject); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.topic, tc.subject, got, tc.want)
		}
	}
	if tbl.Len() != 7 || tbl.Subscriptions("dev") != 6 || tbl.Subscriptions("none") != 0 {
		t.Errorf("Len() = %d, Subscriptions(dev) = %d, Subscriptions(none) = %d; want 7, 6, 0",
			tbl.Len(), tbl.Subscriptions("dev"), tbl.Subscriptions("none"))
	}

	// Duplicates are one entry; a tag list is found in any tag order.
	if add("dev", "42/telemetry", 2) || add("dev", "43/telemetry||42/telemetry", 3) || add("dev", "#", 1) {
		t.Error("Add of an existing entry reported a new one")
	}
	if tbl.Len() != 7 {
		t.Errorf("Len() = %d after duplicate adds, want 7", tbl.Len())
	}
	// The same sub under another matching filter is another entry.
	if !add("dev", "+/+", 2) {
		t.Error("Add of sub 2 under a second filter reported a duplicate")
	}
	if got := matches(&tbl, "dev", "42/telemetry"); !slices.Equal(got, []int{1, 2, 2, 3, 4, 5}) {
		t.Errorf("Match = %v, want sub 2 twice", got)
	}

	// Removal.
	if remove("dev", "42/telemetry", 3) || remove("dev", "+/telemetry", 5) || remove("nope", "*", 1) {
		t.Error("Remove of a missing entry reported success")
	}
	for _, e := range []struct {
		filter string
		sub    int
	}{{"+/+", 2}, {"43/telemetry || 42/telemetry", 3}, {"42/#", 5}, {"42/telemetry", 2}} {
		if !remove("dev", e.filter, e.sub) {
			t.Errorf("Remove(dev, %q, %d) = false", e.filter, e.sub)
		}
	}
	if got := matches(&tbl, "dev", "42/telemetry"); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("after removals Match = %v, want [1 4]", got)
	}
	if got := matches(&tbl, "dev", "43/telemetry"); !slices.Equal(got, []int{1, 4, 6}) {
		t.Errorf("after removals Match = %v, want [1 4 6]", got)
	}
	for _, e := range []struct {
		topic, filter string
		sub           int
	}{{"dev", "*", 1}, {"dev", "+/telemetry", 4}, {"dev", "43/+", 6}, {"other", "*", 7}} {
		remove(e.topic, e.filter, e.sub)
	}
	if tbl.Len() != 0 || len(tbl.topics) != 0 {
		t.Errorf("empty table: Len() = %d, %d topics left", tbl.Len(), len(tbl.topics))
	}
}

func TestTablePrunes(t *testing.T) {
	var tbl Table[int]
	filters := []string{"a/b/+/#", "a/b/c", "a/+/c", "+/+", "a/#", "x || y", "x"}
	for i, f := range filters {
		tbl.Add("t", mustParse(t, f), i)
	}
	tt := tbl.topics["t"]
	for i, f := range filters {
		if !tbl.Remove("t", mustParse(t, f), i) {
			t.Fatalf("Remove(%q) = false", f)
		}
		if i == len(filters)-2 {
			// Only the exact "x" is left: the trie is bare, "y" is gone.
			if !tt.root.empty() {
				t.Errorf("trie not pruned: %+v", tt.root)
			}
			if _, ok := tt.exact["y"]; ok || len(tt.exact) != 1 {
				t.Errorf("exact map not pruned: %v", tt.exact)
			}
		}
	}
	if _, ok := tbl.topics["t"]; ok {
		t.Error("empty topic not removed")
	}
}

// TestTableSetIndex adds and removes enough subs under one filter to build
// and drop a set's index.
func TestTableSetIndex(t *testing.T) {
	var tbl Table[int]
	f := mustParse(t, "a/+")
	const n = 100
	for i := range n {
		tbl.Add("t", f, i)
		tbl.Add("t", f, i)
	}
	for i := 0; i < n; i += 2 {
		tbl.Remove("t", f, i)
	}
	if got := matches(&tbl, "t", "a/b"); len(got) != n/2 || got[0] != 1 || got[n/2-1] != n-1 {
		t.Fatalf("Match = %v, want the %d odd subs", got, n/2)
	}
	for i := 1; i < n; i += 2 {
		if !tbl.Remove("t", f, i) {
			t.Fatalf("Remove(%d) = false", i)
		}
	}
	if tbl.Len() != 0 {
		t.Fatalf("Len() = %d, want 0", tbl.Len())
	}
}

// TestTableRandom compares Table.Match with a loop over all entries using
// Filter.Match, through random adds and removes.
func TestTableRandom(t *testing.T) {
	type entry struct {
		topic string
		f     Filter
		sub   int
	}
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "", "c"}
	subject := func() string {
		ls := make([]string, 1+rng.IntN(4))
		for i := range ls {
			ls[i] = levels[rng.IntN(len(levels))]
		}
		return strings.Join(ls, "/")
	}
	filter := func() string {
		switch rng.IntN(10) {
		case 0:
			return "*"
		case 1:
			tag := func() string { // never empty
				if s := subject(); s != "" {
					return s
				}
				return "a"
			}
			return tag() + " || " + tag() + "||" + tag()
		case 2, 3:
			return subject()
		}
		ls := make([]string, 1+rng.IntN(4))
		for i := range ls {
			switch rng.IntN(4) {
			case 0:
				ls[i] = "+"
			default:
				ls[i] = levels[rng.IntN(len(levels))]
			}
		}
		if rng.IntN(3) == 0 {
			ls[len(ls)-1] = "#"
		}
		return strings.Join(ls, "/")
	}
	topics := []string{"t1", "t2"}

	var tbl Table[int]
	model := map[entry]bool{}
	var list []entry // model's keys, to pick one to remove
	hits := 0
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5: // add, sometimes again
			e := entry{topics[rng.IntN(2)], mustParse(t, filter()), rng.IntN(50)}
			if rng.IntN(4) == 0 && len(list) > 0 {
				e = list[rng.IntN(len(list))]
			}
			if got, want := tbl.Add(e.topic, e.f, e.sub), !model[e]; got != want {
				t.Fatalf("step %d: Add(%v) = %v, want %v", step, e, got, want)
			}
			if !model[e] {
				model[e] = true
				list = append(list, e)
			}
		case op < 7 && len(list) > 0: // remove
			i := rng.IntN(len(list))
			e := list[i]
			if rng.IntN(5) == 0 {
				e.sub = -1 // not there
			}
			if got, want := tbl.Remove(e.topic, e.f, e.sub), model[e]; got != want {
				t.Fatalf("step %d: Remove(%v) = %v, want %v", step, e, got, want)
			}
			if model[e] {
				delete(model, e)
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
			}
		default: // match
			topic, s := topics[rng.IntN(2)], subject()
			var want []int
			for _, e := range list {
				if e.topic == topic && e.f.Match(s) {
					want = append(want, e.sub)
				}
			}
			slices.Sort(want)
			hits += len(want)
			if got := matches(&tbl, topic, s); !slices.Equal(got, want) {
				t.Fatalf("step %d: Match(%q, %q) = %v, want %v", step, topic, s, got, want)
			}
		}
		if tbl.Len() != len(list) {
			t.Fatalf("step %d: Len() = %d, want %d", step, tbl.Len(), len(list))
		}
	}
	if hits < 10000 {
		t.Fatalf("only %d matches in all: the test exercises too little", hits)
	}
	t.Logf("%d entries left, %d matches checked", len(list), hits)
}

// TestTableConcurrent is for the race detector: matches run while entries
// are added and removed.
func TestTableConcurrent(t *testing.T) {
	var tbl Table[int]
	filters := []Filter{mustParse(t, "a/+"), mustParse(t, "a/b || c"), mustParse(t, "#"), mustParse(t, "a/#")}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				f := filters[i%len(filters)]
				tbl.Add("t", f, w*10000+i)
				tbl.Match("t", "a/b", func(int) {})
				tbl.Remove("t", f, w*10000+i)
			}
		})
	}
	wg.Wait()
	if tbl.Len() != 0 {
		t.Fatalf("Len() = %d, want 0", tbl.Len())
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tbl := benchTable(1000)
	n := 0
	fn := func(int) { n++ }
	allocs := testing.AllocsPerRun(100, func() { tbl.Match("devices", benchSubject, fn) })
	if allocs != 0 {
		t.Errorf("Match allocates %v times a call, want 0", allocs)
	}
	if n == 0 {
		t.Error("Match found nothing")
	}
}

func ExampleTable() {
	var tbl Table[string]
	for _, s := range []struct{ filter, sub string }{
		{"42/#", "everything of device 42"},
		{"+/telemetry", "all telemetry"},
		{"alarm || fault", "trouble"},
	} {
		f, err := ParseFilter(s.filter)
		if err != nil {
			panic(err)
		}
		tbl.Add("devices", f, s.sub)
	}
	tbl.Match("devices", "42/telemetry", func(sub string) { fmt.Println(sub) })
	// Output:
	// everything of device 42
	// all telemetry
}
