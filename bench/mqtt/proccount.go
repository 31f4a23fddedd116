package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procCounts are counters of a broker process that say where its CPU time
// per message goes beyond the total: system calls and thread switches.
// Unlike CPU time, which a shared machine's other load moves (an idle
// runtime spins less when the cores are busy), they are counts.
type procCounts struct {
	reads, writes int64 // read- and write-class system calls (/proc/PID/io syscr, syscw): socket and file I/O, eventfd wake-ups
	switches      int64 // thread context switches, voluntary (a thread slept: futex, epoll) and not, over the threads alive
}

// counts reads the process's counters.
func (b *broker) counts() (procCounts, error) {
	var c procCounts
	pid := b.cmd.Process.Pid
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return c, err
	}
	procFields(io, func(k string, n int64) {
		switch k {
		case "syscr":
			c.reads = n
		case "syscw":
			c.writes = n
		}
	})
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		procFields(st, func(k string, n int64) {
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				c.switches += n
			}
		})
	}
	return c, nil
}

// procFields calls fn with the name and number of each "name: number" line
// of a /proc file (a line whose value is no number gives 0).
func procFields(b []byte, fn func(name string, n int64)) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		fn(k, n)
	}
}

// perMsg is what c1 counted since c0 per message, as read and write
// system calls and thread switches.
type perMsg struct{ reads, writes, switches float64 }

func (c1 procCounts) since(c0 procCounts, msgs int64) perMsg {
	f := func(a, b int64) float64 { return float64(a-b) / float64(msgs) }
	return perMsg{f(c1.reads, c0.reads), f(c1.writes, c0.writes), f(c1.switches, c0.switches)}
}

func (p perMsg) String() string {
	return fmt.Sprintf("%.2f read and %.2f write system calls, %.2f thread switches per message", p.reads, p.writes, p.switches)
}
