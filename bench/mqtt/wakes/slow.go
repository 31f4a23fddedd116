package main

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// sortSlow reads a fleet round's timeline, one message a line (delivered
// at, Unix ns; latency, ns), and prints how many of the messages sent and
// delivered within the trace took at least over, by what the processors
// did between the message's send and its delivery.
func (c *counts) sortSlow(path string, over time.Duration) error {
	if c.wall == 0 {
		return fmt.Errorf("the trace has no clock snapshot to set the timeline against (Go 1.25 or later writes one)")
	}
	if len(c.runs) == 0 {
		return fmt.Errorf("the trace has no goroutine runs")
	}
	slices.SortFunc(c.runs, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	var longest trace.Time // no run lasted longer: how far back one ending in a window can start
	for _, r := range c.runs {
		longest = max(longest, r.to-r.from)
	}
	first, last := c.runs[0].from, c.runs[len(c.runs)-1].to

	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	in, slow := 0, map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		at, lat, ok := strings.Cut(sc.Text(), " ")
		d, err1 := strconv.ParseInt(at, 10, 64)
		l, err2 := strconv.ParseInt(lat, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("%s: want lines of two integers, got %q", path, sc.Text())
		}
		sent, got := trace.Time(d-l-c.wall), trace.Time(d-c.wall)
		if sent < first || got > last {
			continue
		}
		in++
		if time.Duration(l) >= over {
			slow[c.during(sent, got, longest)]++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	n := 0
	for _, k := range slow {
		n += k
	}
	fmt.Printf("\n%d messages sent and delivered within the trace, %d at least %v; while they were in flight the processors were:\n", in, n, over)
	for _, e := range sorted(slow, 0) {
		fmt.Printf("%7d  %s\n", e.n, e.key)
	}
	return nil
}

// during says what the processors did from sent to got: mostly idle, a
// collection under way, or else busiest with which kind of goroutine.
func (c *counts) during(sent, got, longest trace.Time) string {
	busy := map[string]trace.Time{}
	var total trace.Time
	i, _ := slices.BinarySearchFunc(c.runs, sent-longest, func(r span, t trace.Time) int { return cmp.Compare(r.from, t) })
	for _, r := range c.runs[i:] {
		if r.from > got {
			break
		}
		if r.to < sent {
			continue
		}
		d := min(r.to, got) - max(r.from, sent)
		busy[r.what] += d
		total += d
	}
	if 2*total < got-sent {
		return "mostly idle"
	}
	for _, g := range c.gc {
		if g.to >= sent && g.from <= got {
			return "busy, a collection under way"
		}
	}
	top, most := "", trace.Time(-1)
	for k, d := range busy {
		if d > most || d == most && k < top {
			top, most = k, d
		}
	}
	return "busy, most with " + top
}
