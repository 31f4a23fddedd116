// Command peers measures Ferry's native protocol beside RabbitMQ and NATS
// JetStream on this machine, in one run, with the same load, the systems
// alternated in every round (A B C … A B C …) so that drift affects them
// alike, the median of the rounds reported:
//
//   - confirmed publish rate: --producers publishers, each on its own
//     connection with --window unconfirmed publishes, for --duration;
//   - consume rate: one consumer (a consumer group of one) reads them all;
//   - end-to-end p50/p99 latency at half that publish rate: one paced
//     publisher, one consumer, the due time in the body, for --latency.
//
// for each body size of --sizes. With --amqp-frontend, Ferry is measured
// through its AMQP 0-9-1 listener instead, with RabbitMQ's load program. Systems: Ferry (`ferry serve`, built from
// --repo, with async and with sync flush), RabbitMQ (durable classic and
// quorum queues, publisher confirms) at --amqp, NATS JetStream (file
// storage) started on a free port. A system that cannot be reached or is
// not installed is skipped with a note. The disk's sequential write
// bandwidth and fsync rate (dd) are measured in the same run, on the file
// system of $TMPDIR. Prints a Markdown table and writes a chart (--chart).
//
//	cd bench/peers && go run . [--rounds 3] [--sizes 128,4096]   (or bench/peers.sh)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	repo      = flag.String("repo", "../..", "Ferry's source tree, to build ferry from")
	ferryBin  = flag.String("ferry", "", "ferry binary (default: built from --repo)")
	natsBin   = flag.String("nats-server", "nats-server", "nats-server binary, started with JetStream")
	amqpURL   = flag.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ to measure")
	systemsF  = flag.String("systems", "ferry-async,ferry-sync,rabbit-classic,rabbit-quorum,nats", "systems, in the order of each round")
	sizesF    = flag.String("sizes", "128,4096", "body sizes, bytes")
	rounds    = flag.Int("rounds", 3, "rounds (the median is reported)")
	producers = flag.Int("producers", 4, "publishers, each on its own connection")
	windowN   = flag.Int("window", 1024, "unconfirmed publishes per publisher")
	pubDur    = flag.Duration("duration", 3*time.Second, "publish phase")
	syncDur   = flag.Duration("sync-duration", 2*time.Second, "publish phase for Ferry with sync flush (fewer messages)")
	latDur    = flag.Duration("latency", 4*time.Second, "latency phase")
	latRateF  = flag.Float64("latency-rate", 0, "paced rate of the latency phase, msg/s (0: half the measured publish rate)")
	chartPath = flag.String("chart", "", "write the chart (PNG) here")
	noDisk    = flag.Bool("no-disk", false, "skip the dd measurement")

	replicated   = flag.Bool("replicated", false, "the replicated scenario: a Ferry sync group of three, NATS JetStream R3, RabbitMQ quorum (default --systems "+replicatedSystems+"), with a failover per run")
	failoverWarm = flag.Duration("failover-warm", 2*time.Second, "replicated systems: steady publishing before kill -9 of the leader (0: no failover)")

	amqpFront = flag.Bool("amqp-frontend", false, "the AMQP scenario: Ferry's AMQP 0-9-1 listener against RabbitMQ, the same amqp091-go load, publishes through a durable direct exchange bound to the queue (default --systems "+amqpSystems+")")
)

// replicatedSystems are --replicated's systems.
const replicatedSystems = "ferry-group,nats-r3,rabbit-quorum"

type system struct {
	key, name, short string
	start            func() (target, error)
	duration         time.Duration
	skip             string // why it is skipped, if it is
}

func main() {
	flag.Parse()
	systemsSet := false
	flag.Visit(func(f *flag.Flag) { systemsSet = systemsSet || f.Name == "systems" })
	if !systemsSet && *replicated {
		*systemsF = replicatedSystems
	}
	if !systemsSet && *amqpFront {
		*systemsF = amqpSystems
	}
	var sizes []int
	for _, s := range strings.Split(*sizesF, ",") {
		n, err := strconv.Atoi(s)
		check(err)
		sizes = append(sizes, n)
	}
	tmp, err := os.MkdirTemp("", "bench-peers-bin")
	check(err)
	defer os.RemoveAll(tmp)

	versions := []string{fmt.Sprintf("%d CPUs", runtime.NumCPU()), runtime.Version()}
	// needFerry builds ferry from --repo for the first system that runs
	// it, unless --ferry names one.
	needFerry := func() {
		if *ferryBin == "" {
			*ferryBin = build(tmp, *repo, "./cmd/ferry", "ferry")
			versions = append(versions, "ferry "+gitRev(*repo))
		}
	}
	var systems []*system
	for _, key := range strings.Split(*systemsF, ",") {
		s := &system{key: key, duration: *pubDur}
		switch key {
		case "ferry-async", "ferry-sync":
			flush := strings.TrimPrefix(key, "ferry-")
			s.name, s.short = fmt.Sprintf("Ferry native (%s flush)", flush), "Ferry "+flush
			if flush == "sync" {
				s.duration = *syncDur
			}
			s.start = func() (target, error) { return startFerry(*ferryBin, flush) }
			needFerry()
		case "ferry-amqp-async", "ferry-amqp-sync":
			flush := strings.TrimPrefix(key, "ferry-amqp-")
			s.name, s.short = fmt.Sprintf("Ferry AMQP (%s flush, durable queue, confirms)", flush), "Ferry AMQP "+flush
			if flush == "sync" {
				s.duration = *syncDur
			}
			s.start = func() (target, error) { return startFerryAMQP(*ferryBin, flush) }
			needFerry()
		case "rabbit-classic", "rabbit-quorum":
			qtype := strings.TrimPrefix(key, "rabbit-")
			s.name, s.short = fmt.Sprintf("RabbitMQ (durable %s queue, confirms)", qtype), "RabbitMQ "+qtype
			s.start = func() (target, error) { return startRabbit(*amqpURL, qtype) }
			if v := rabbitVersion(*amqpURL); v == "" {
				s.skip = "skipped: no RabbitMQ at " + *amqpURL
			} else if !slices.Contains(versions, "RabbitMQ "+v) {
				versions = append(versions, "RabbitMQ "+v)
			}
		case "ferry-group":
			s.name, s.short = "Ferry native (sync group of 3, min-insync 2, async flush)", "Ferry group"
			s.start = func() (target, error) { return startFerryGroup(*ferryBin) }
			needFerry()
		case "nats", "nats-r3":
			s.name, s.short = "NATS JetStream (file storage, acked publishes)", "NATS JetStream"
			if key == "nats-r3" {
				s.name, s.short = "NATS JetStream (3 servers, R3 streams, file storage)", "NATS R3"
			}
			bin, err := exec.LookPath(*natsBin)
			if err != nil {
				s.skip = "skipped: nats-server not installed"
				break
			}
			s.start = func() (target, error) { return startNATS(bin) }
			if key == "nats-r3" {
				s.start = func() (target, error) { return startNATSCluster(bin) }
			}
			out, _ := exec.Command(bin, "--version").Output()
			if v := strings.TrimSpace(string(out)); !slices.Contains(versions, v) {
				versions = append(versions, v)
			}
		default:
			check(fmt.Errorf("unknown system %q", key))
		}
		systems = append(systems, s)
	}
	fmt.Fprintf(os.Stderr, "== %s\n", strings.Join(versions, ", "))

	var disk string
	if !*noDisk {
		disk = measureDisk()
		fmt.Fprintf(os.Stderr, "== disk: %s\n", disk)
	}

	results := map[string]map[int][]runResult{} // system → size → rounds
	for _, s := range systems {
		results[s.key] = map[int][]runResult{}
	}
	for round := 1; round <= *rounds; round++ {
		for _, size := range sizes {
			for _, s := range systems {
				if s.skip != "" {
					continue
				}
				t, err := s.start()
				if err != nil {
					fmt.Fprintf(os.Stderr, "round %d %s %d B: start: %v\n", round, s.short, size, err)
					results[s.key][size] = append(results[s.key][size], runResult{err: err})
					continue
				}
				r := measure(t, size, s.duration)
				t.close()
				fmt.Fprintf(os.Stderr, "round %d %-16s %5d B: publish %8.0f/s (%d msgs, server %v CPU and %.2f read/write syscalls a msg, client %v CPU), consume %8.0f/s (server %v, client %v CPU a msg), e2e at %.0f/s p50 %s p99 %s lost %d%s%s\n",
					round, s.short, size, r.publish, r.published, r.cpuPerMsg, r.sysPerMsg, r.clientPub, r.consume, r.serverCons, r.clientCons, r.latRate, ms(r.p50), ms(r.p99), r.latLost, errNote(r.err), failoverNote(r))
				results[s.key][size] = append(results[s.key][size], r)
			}
		}
	}

	rows := summarize(systems, sizes, results)
	fmt.Printf("\n%s; %d publishers × window %d, publish for %s (Ferry sync flush: %s), then one consumer reads all; latency: one publisher paced at half the median publish rate for %s; median of %d rounds.\n",
		strings.Join(versions, ", "), *producers, *windowN, *pubDur, *syncDur, *latDur, *rounds)
	if disk != "" {
		fmt.Printf("Disk (dd, same run): %s.\n", disk)
	}
	fmt.Println()
	printTable(rows, sizes)
	printFailovers(systems, sizes, results)
	if *chartPath != "" {
		check(drawChart(*chartPath, rows, sizes, strings.Join(versions, ", ")))
		fmt.Fprintf(os.Stderr, "chart: %s\n", *chartPath)
	}
}

// row is one system's medians per size.
type row struct {
	sys *system
	med map[int]runResult
	bad map[int]string // the first error per size, if any round failed
}

func summarize(systems []*system, sizes []int, results map[string]map[int][]runResult) []row {
	var rows []row
	for _, s := range systems {
		rw := row{sys: s, med: map[int]runResult{}, bad: map[int]string{}}
		for _, size := range sizes {
			var ok []runResult
			for _, r := range results[s.key][size] {
				if r.err == nil {
					ok = append(ok, r)
				} else if rw.bad[size] == "" {
					rw.bad[size] = r.err.Error()
				}
			}
			if len(ok) == 0 {
				continue
			}
			pick := func(f func(runResult) float64) float64 {
				v := make([]float64, len(ok))
				for i, r := range ok {
					v[i] = f(r)
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			rw.med[size] = runResult{
				publish:    pick(func(r runResult) float64 { return r.publish }),
				consume:    pick(func(r runResult) float64 { return r.consume }),
				latRate:    pick(func(r runResult) float64 { return r.latRate }),
				p50:        time.Duration(pick(func(r runResult) float64 { return float64(r.p50) })),
				p99:        time.Duration(pick(func(r runResult) float64 { return float64(r.p99) })),
				cpuPerMsg:  time.Duration(pick(func(r runResult) float64 { return float64(r.cpuPerMsg) })),
				clientPub:  time.Duration(pick(func(r runResult) float64 { return float64(r.clientPub) })),
				serverCons: time.Duration(pick(func(r runResult) float64 { return float64(r.serverCons) })),
				clientCons: time.Duration(pick(func(r runResult) float64 { return float64(r.clientCons) })),
				sysPerMsg:  pick(func(r runResult) float64 { return r.sysPerMsg }),
			}
			for _, r := range ok {
				rw.med[size] = addLost(rw.med[size], r.latLost)
			}
		}
		rows = append(rows, rw)
	}
	return rows
}

func addLost(r runResult, n int64) runResult { r.latLost += n; return r }

func printTable(rows []row, sizes []int) {
	fmt.Println("| system | body | publish msg/s | consume msg/s | e2e p50 | e2e p99 (at msg/s) | CPU per msg, publish: server + client | consume: server + client | note |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, rw := range rows {
		for _, size := range sizes {
			note := rw.sys.skip
			if note == "" && rw.bad[size] != "" {
				note = "failed: " + rw.bad[size]
			}
			r, ok := rw.med[size]
			if !ok {
				fmt.Printf("| %s | %s | – | – | – | – | – | – | %s |\n", rw.sys.name, bytesName(size), note)
				continue
			}
			if r.latLost > 0 {
				note = strings.TrimPrefix(note+fmt.Sprintf("; %d latency messages not received", r.latLost), "; ")
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s (%s) | %s + %s | %s + %s | %s |\n", rw.sys.name, bytesName(size),
				thousands(r.publish), thousands(r.consume), ms(r.p50), ms(r.p99), thousands(r.latRate),
				us(r.cpuPerMsg), us(r.clientPub), us(r.serverCons), us(r.clientCons), note)
		}
	}
	// Ratios of each Ferry system to each peer, the targets: the
	// async and sync flush modes, Ferry's AMQP listener, or the
	// replicated group, whichever the run measured.
	fmt.Println()
	fmt.Println("| ratio | body | publish | consume |")
	fmt.Println("|---|---:|---:|---:|")
	for _, f := range rows {
		if !strings.HasPrefix(f.sys.key, "ferry") {
			continue
		}
		for _, rw := range rows {
			if !strings.HasPrefix(rw.sys.key, "rabbit") && !strings.HasPrefix(rw.sys.key, "nats") {
				continue
			}
			for _, size := range sizes {
				a, ok1 := f.med[size]
				p, ok2 := rw.med[size]
				if ok1 && ok2 && p.publish > 0 && p.consume > 0 {
					fmt.Printf("| %s ÷ %s | %s | %.2f× | %.2f× |\n", f.sys.short, rw.sys.short, bytesName(size), a.publish/p.publish, a.consume/p.consume)
				}
			}
		}
	}
}

var ddRe = regexp.MustCompile(`copied, ([0-9.]+) s, ([0-9.,]+ [kMG]?B/s)`)

// measureDisk runs dd as bench/run.sh does, where the systems keep their data.
func measureDisk() string {
	dir := os.TempDir()
	probe := filepath.Join(dir, fmt.Sprintf("bench-peers-dd.%d", os.Getpid()))
	defer os.Remove(probe)
	out, err := exec.Command("dd", "if=/dev/zero", "of="+probe, "bs=1M", "count=2048", "conv=fdatasync").CombinedOutput()
	m := ddRe.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		return "dd failed: " + strings.TrimSpace(string(out))
	}
	seq := m[2]
	out, err = exec.Command("dd", "if=/dev/zero", "of="+probe, "bs=4k", "count=2000", "oflag=dsync").CombinedOutput()
	m = ddRe.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		return "sequential write " + seq + "; fsync dd failed"
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	return fmt.Sprintf("sequential write 2 GiB + fdatasync %s; 4 KiB O_DSYNC writes %s fsync/s", seq, thousands(2000/secs))
}

func build(dir, src, pkg, name string) string {
	out := filepath.Join(dir, name)
	abs, err := filepath.Abs(out)
	check(err)
	cmd := exec.Command("go", "build", "-o", abs, pkg)
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, os.Stderr, os.Stderr
	check(cmd.Run())
	return abs
}

func gitRev(dir string) string {
	out, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%h (%cs)").Output()
	if err != nil {
		return "(unknown revision)"
	}
	return strings.TrimSpace(string(out))
}

func failoverNote(r runResult) string {
	switch {
	case r.failoverErr != nil:
		return "; failover: " + r.failoverErr.Error()
	case r.failover > 0:
		return fmt.Sprintf("; failover (killed %s) %s", r.failoverWho, ms(r.failover))
	}
	return ""
}

// printFailovers lists each replicated system's failover times, every run.
func printFailovers(systems []*system, sizes []int, results map[string]map[int][]runResult) {
	header := false
	for _, s := range systems {
		var times []time.Duration
		var all, errs []string
		for _, size := range sizes {
			for _, r := range results[s.key][size] {
				switch {
				case r.failoverErr != nil:
					errs = append(errs, r.failoverErr.Error())
					all = append(all, "failed")
				case r.failover > 0:
					times = append(times, r.failover)
					all = append(all, fmt.Sprintf("%.2f s", r.failover.Seconds()))
				}
			}
		}
		if len(all) == 0 {
			continue
		}
		if !header {
			fmt.Println()
			fmt.Println("| system | kill -9 of the leader → first acknowledged write, median | every run | note |")
			fmt.Println("|---|---:|---|---|")
			header = true
		}
		med := "–"
		if len(times) > 0 {
			slices.Sort(times)
			med = fmt.Sprintf("%.2f s", times[len(times)/2].Seconds())
		}
		fmt.Printf("| %s | %s | %s | %s |\n", s.name, med, strings.Join(all, ", "), strings.Join(errs, "; "))
	}
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return " — " + err.Error()
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

func bytesName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// thousands formats v with thousands separators.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}
