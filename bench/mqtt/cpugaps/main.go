// Command cpugaps measures how often, and for how long, the machine takes
// a CPU away from a thread that wants it: each of --threads goroutines,
// locked to a thread of its own, reads the clock in a loop for --for, and
// counts the gaps between two readings longer than --over. On an idle
// machine the gaps are the kernel's and the host's (a virtual machine's
// vCPU descheduled); a latency percentile below the longest gaps measures
// the machine, not the program.
//
//	go run ./cpugaps --threads 2
package main

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"time"
)

func main() {
	threads := flag.Int("threads", 1, "goroutines, each on a thread of its own")
	dur := flag.Duration("for", 5*time.Second, "how long each reads the clock")
	over := flag.Duration("over", 100*time.Microsecond, "shortest gap counted")
	flag.Parse()
	var wg sync.WaitGroup
	for i := range *threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			var n int
			var total, longest time.Duration
			last := time.Now()
			for end := last.Add(*dur); last.Before(end); {
				now := time.Now()
				if d := now.Sub(last); d > *over {
					n, total, longest = n+1, total+d, max(longest, d)
				}
				last = now
			}
			fmt.Printf("thread %d: %d gaps over %v, %v in all, the longest %v\n", i, n, *over, total, longest)
		}()
	}
	wg.Wait()
}
