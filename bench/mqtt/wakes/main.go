// Command wakes reads a Go runtime trace and counts the goroutine hand-offs
// in it: each time a goroutine was made runnable (woken from a wait, or
// created), by kind of goroutine (the function it runs), where it waited,
// and who woke it. Divided by the messages the trace covers, it tells how
// many goroutines a message readies on its way through the broker, which
// the thread switches of a run follow but the machine's other load moves.
// It also gives how long goroutines waited, runnable, for a processor: the
// scheduler's share of a message's latency.
//
// Take the trace from bench/mqtt/ferryprof during a fleet run:
//
//	curl -o fleet.trace 'http://PPROF_ADDR/debug/pprof/trace?seconds=3'
//	go run ./wakes --messages 30000 fleet.trace
//
// (1,000 devices × 10 msg/s for 3 s: 30,000 messages.)
//
// With --long D it lists each time a goroutine ran, or sat in a system
// call, for at least D. With --timeline FILE, the round's timeline
// (bench/mqtt --fleet-timelines) of the run the trace covers, it sorts the
// messages slower than --over by what the processors did while each was in
// flight, from its send to its delivery: mostly idle (the delay was outside
// the broker), a garbage collection under way, or else the kind of
// goroutine that ran longest.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	messages := flag.Float64("messages", 1, "messages the trace covers: counts are printed per message")
	top := flag.Int("top", 25, "hand-offs to list by where the goroutine waited and who woke it")
	long := flag.Duration("long", 0, "also list each time a goroutine ran, or sat in a system call, at least this long: with one processor, the work that made the others wait")
	timeline := flag.String("timeline", "", "a fleet round's timeline (bench/mqtt --fleet-timelines) of the run traced: sort its slow messages by what the processors did meanwhile")
	over := flag.Duration("over", time.Millisecond, "with --timeline: the latency of a slow message")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: wakes [--messages N] [--top N] [--long D] [--timeline FILE [--over D]] TRACE")
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	c, err := count(f, *long, *timeline != "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d goroutines made runnable, %.2f per message\n", c.total, float64(c.total) / *messages)
	if d := c.delays; len(d) > 0 {
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }
		fmt.Printf("from runnable to running (%d times): p50 %v, p90 %v, p99 %v, p99.9 %v, max %v\n",
			len(d), q(0.5), q(0.9), q(0.99), q(0.999), d[len(d)-1])
	}
	fmt.Printf("\nby kind:\n")
	for _, e := range sorted(c.byKind, 0) {
		fmt.Printf("%7.3f  %s\n", float64(e.n) / *messages, e.key)
	}
	fmt.Printf("\nby where it waited and who woke it:\n")
	for _, e := range sorted(c.bySite, *top) {
		fmt.Printf("%7.3f  %s\n", float64(e.n) / *messages, e.key)
	}
	if *long > 0 {
		fmt.Printf("\nran or sat in a system call at least %v (ms into the trace, how long, what, where it stopped):\n", *long)
		for _, l := range c.long {
			fmt.Printf("%9.3f %7.3f ms  %s\n", float64(l.at)/1e6, float64(l.d)/1e6, l.what)
		}
	}
	if *timeline != "" {
		if err := c.sortSlow(*timeline, *over); err != nil {
			log.Fatal(err)
		}
	}
}

// longRun is a goroutine's time on a processor, or in a system call, at
// least --long.
type longRun struct {
	at   time.Duration // since the trace's first event
	d    time.Duration
	what string
}

// span is a stretch of the trace: a goroutine's time on a processor (what:
// its kind) or a garbage collection's phase (what: the range's name).
type span struct {
	from, to trace.Time
	what     string
}

type counts struct {
	total          int
	byKind, bySite map[string]int
	delays         []time.Duration // each wait of a runnable goroutine for a processor
	long           []longRun

	// For --timeline: every goroutine's time on a processor, every
	// collection's phases, and the wall clock's time at the trace's 0.
	runs, gc []span
	wall     int64 // Unix ns - trace.Time; 0: the trace has no clock snapshot
}

// count walks the trace's goroutine state transitions.
// long > 0 lists the runs and system calls at least that long; spans keeps
// every run and collection phase (counts.runs, counts.gc).
func count(r io.Reader, long time.Duration, spans bool) (*counts, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	c := &counts{byKind: map[string]int{}, bySite: map[string]int{}}
	kind := map[trace.GoID]string{}         // the function a goroutine runs
	waitedAt := map[trace.GoID]string{}     // where it last started to wait
	runnable := map[trace.GoID]trace.Time{} // since when it is runnable
	running := map[trace.GoID]trace.Time{}  // since when it runs, or is in a system call
	callAt := map[trace.GoID]string{}       // where it entered its system call
	type rangeKey struct {
		name  string
		scope trace.ResourceID
	}
	ranges := map[rangeKey]trace.Time{} // collection phases under way, since when
	track := long > 0 || spans          // running and callAt are needed
	var t0 trace.Time
	for {
		e, err := tr.ReadEvent()
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return nil, err
		}
		if t0 == 0 {
			t0 = e.Time()
		}
		if spans {
			switch e.Kind() {
			case trace.EventSync:
				if cs := e.Sync().ClockSnapshot; cs != nil && c.wall == 0 {
					c.wall = cs.Wall.UnixNano() - int64(cs.Trace)
				}
			case trace.EventRangeBegin:
				ranges[rangeKey{e.Range().Name, e.Range().Scope}] = e.Time()
			case trace.EventRangeEnd:
				k := rangeKey{e.Range().Name, e.Range().Scope}
				if t, ok := ranges[k]; ok {
					c.gc = append(c.gc, span{t, e.Time(), k.name})
					delete(ranges, k)
				}
			}
		}
		if e.Kind() != trace.EventStateTransition {
			continue
		}
		st := e.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		if from == trace.GoNotExist {
			kind[id] = short(first(st.Stack)) // the new goroutine's start
		} else if o := outermost(st.Stack); o != "" {
			kind[id] = short(o)
		}
		if track && from != to && (from == trace.GoRunning || from == trace.GoSyscall) {
			if t, ok := running[id]; ok {
				if spans && from == trace.GoRunning {
					c.runs = append(c.runs, span{t, e.Time(), kind[id]})
				}
				if long > 0 && e.Time().Sub(t) >= long {
					what := fmt.Sprintf("%s ran, then %s at %s", kind[id], to, site(st.Stack))
					if from == trace.GoSyscall {
						what = fmt.Sprintf("%s in a system call at %s", kind[id], callAt[id])
					}
					c.long = append(c.long, longRun{t.Sub(t0), e.Time().Sub(t), what})
				}
			}
			delete(running, id)
		}
		if track && (to == trace.GoRunning || to == trace.GoSyscall) {
			running[id] = e.Time()
			if to == trace.GoSyscall {
				callAt[id] = site(st.Stack)
			}
		}
		switch {
		case to == trace.GoRunnable:
			runnable[id] = e.Time()
		case from == trace.GoRunnable && to == trace.GoRunning:
			if t, ok := runnable[id]; ok {
				c.delays = append(c.delays, e.Time().Sub(t))
				delete(runnable, id)
			}
		}
		switch {
		case to == trace.GoWaiting:
			waitedAt[id] = site(st.Stack) + " (" + st.Reason + ")"
		case from == trace.GoNotExist && to == trace.GoRunnable:
			c.total++
			c.byKind[kind[id]+" (created)"]++
			c.bySite[fmt.Sprintf("%-40s created by %s", kind[id], waker(e, kind))]++
		case from == trace.GoWaiting && to == trace.GoRunnable:
			c.total++
			c.byKind[kind[id]]++
			c.bySite[fmt.Sprintf("%-40s waited at %-45s woken by %s", kind[id], waitedAt[id], waker(e, kind))]++
		}
	}
}

// waker names the goroutine running event e, and where it was.
func waker(e trace.Event, kind map[trace.GoID]string) string {
	g := e.Goroutine()
	if g == trace.NoGoroutine {
		return "the runtime (poller, timer)"
	}
	return kind[g] + " @ " + site(e.Stack())
}

func first(s trace.Stack) string {
	for f := range s.Frames() {
		return f.Func
	}
	return ""
}

func outermost(s trace.Stack) string {
	last := ""
	for f := range s.Frames() {
		last = f.Func
	}
	return last
}

// site is the innermost frame of s outside the runtime and the standard
// library's plumbing.
func site(s trace.Stack) string {
	for f := range s.Frames() {
		switch pkg, _, _ := strings.Cut(f.Func, "."); pkg {
		case "runtime", "sync", "internal/poll", "syscall", "net", "os":
			continue
		}
		return short(f.Func)
	}
	return "?"
}

// short drops a function name's import path.
func short(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		return fn[i+1:]
	}
	return fn
}

type entry struct {
	key string
	n   int
}

// sorted returns m's entries, most first, at most n of them (0: all).
func sorted(m map[string]int, n int) []entry {
	var es []entry
	for k, v := range m {
		es = append(es, entry{k, v})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Or(b.n-a.n, strings.Compare(a.key, b.key)) })
	if n > 0 && len(es) > n {
		es = es[:n]
	}
	return es
}
