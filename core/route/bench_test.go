package route

import (
	"fmt"
	"testing"
)

// benchSubject is the subject published in BenchmarkMatch100kSubs10Match.
const benchSubject = "dev/target/telemetry"

// benchMatching are the filters, one subscription each, that match
// benchSubject.
var benchMatching = []string{
	"*",
	"dev/target/telemetry",
	"dev/x || dev/target/telemetry",
	"dev/target/+",
	"dev/+/telemetry",
	"+/target/telemetry",
	"+/+/+",
	"dev/#",
	"dev/target/#",
	"+/+/telemetry",
}

// benchTable returns a table with n subscriptions on topic "devices", of
// which len(benchMatching) match benchSubject; the others are exact subjects,
// wildcards and tag lists that share prefixes with it but do not match.
func benchTable(n int) *Table[int] {
	var tbl Table[int]
	for i, expr := range benchMatching {
		f, err := ParseFilter(expr)
		if err != nil {
			panic(err)
		}
		tbl.Add("devices", f, i)
	}
	for i := len(benchMatching); i < n; i++ {
		var expr string
		switch i % 6 {
		case 0:
			expr = fmt.Sprintf("dev/%d/telemetry", i)
		case 1:
			expr = fmt.Sprintf("dev/%d/+", i)
		case 2:
			expr = fmt.Sprintf("dev/%d/telemetry || dev/%d/status", i, i)
		case 3:
			expr = fmt.Sprintf("dev/%d/#", i)
		case 4:
			expr = fmt.Sprintf("+/%d/telemetry", i)
		case 5:
			expr = fmt.Sprintf("dev/+/%d", i)
		}
		f, err := ParseFilter(expr)
		if err != nil {
			panic(err)
		}
		tbl.Add("devices", f, i)
	}
	return &tbl
}

func BenchmarkMatch100kSubs10Match(b *testing.B) {
	tbl := benchTable(100_000)
	n := 0
	fn := func(int) { n++ }
	tbl.Match("devices", benchSubject, fn)
	if n != len(benchMatching) || tbl.Len() != 100_000 {
		b.Fatalf("%d matches of %d subscriptions, want %d of 100000", n, tbl.Len(), len(benchMatching))
	}
	b.ReportAllocs()
	for b.Loop() {
		tbl.Match("devices", benchSubject, fn)
	}
}

// BenchmarkAdd adds entries to a table that already holds 100,000: under
// new filters (new trie nodes and map keys), and more subs under one filter.
func BenchmarkAdd(b *testing.B) {
	b.Run("NewFilter", func(b *testing.B) {
		// Parsing is not measured; past the pool, filters repeat with new subs.
		filters := make([]Filter, 1<<19)
		for i := range filters {
			var expr string
			switch i % 3 {
			case 0:
				expr = fmt.Sprintf("new/%d/telemetry", i)
			case 1:
				expr = fmt.Sprintf("new/%d/+", i)
			case 2:
				expr = fmt.Sprintf("new/%d/a || new/%d/b", i, i)
			}
			filters[i] = mustParse(b, expr)
		}
		tbl := benchTable(100_000)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tbl.Add("devices", filters[i%len(filters)], 100_000+i)
			i++
		}
	})
	b.Run("SameFilter", func(b *testing.B) {
		f := mustParse(b, "dev/+/telemetry")
		tbl := benchTable(100_000)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tbl.Add("devices", f, 100_000+i)
			i++
		}
	})
}
