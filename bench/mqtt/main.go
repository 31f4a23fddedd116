// Command mqtt measures Ferry's MQTT front-end beside Mosquitto and NATS's
// MQTT listener on this machine, in one run, with one load generator (a minimal pipelined MQTT
// 3.1.1 client, wire.go) and the systems alternated so that drift affects
// them alike:
//
//   - fan-in: --publishers publishers → 1 subscriber on "bench/#", --size-byte
//     payloads, QoS 0 and QoS 1 (QoS 1 pipelined, --window in flight), a
//     fixed --count; delivered msg/s at the subscriber, publish rate, lost
//     and duplicate messages. The median of --rounds runs is reported.
//   - device fleet: --fleet publishers at --fleet-rate msg/s each, QoS 1, for
//     --fleet-duration; p50/p99 publish → deliver latency, the median of
//     --fleet-rounds runs, and the broker's CPU time per message (with the
//     load average, the machine being shared); for Ferry also each hop's
//     p50/p99 from its ferry_mqtt_delivery_hop_seconds metrics. With
//     --background N, N more connections each publish one QoS 1 message per
//     --background-interval meanwhile (the many slow devices the fleet's
//     tail must not feel).
//   - idle connections: --idle MQTT connections that do nothing; the
//     broker's VmRSS before and after, per connection.
//
// Ferry runs as `ferry serve` (async and sync flush) with a temporary data
// directory; Mosquitto with a generated configuration (persistence off,
// queue limits lifted); NATS with JetStream file storage. --profile DIR instead profiles Ferry in process
// (ferryprof) under the fan-in loads.
//
//	cd bench/mqtt && go run . [--rounds 3] [--count 400000]   (or bench/mqtt.sh)
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

var (
	repo        = flag.String("repo", "../..", "Ferry's source tree, to build the binaries from")
	ferryBin    = flag.String("ferry", "", "ferry binary (default: built from --repo)")
	profBin     = flag.String("ferryprof", "", "ferryprof binary (default: built from ./ferryprof)")
	mosqBin     = flag.String("mosquitto", "mosquitto", "mosquitto binary")
	natsBin     = flag.String("nats-server", "nats-server", "nats-server binary (its MQTT listener, on JetStream)")
	systemsF    = flag.String("systems", "ferry-async,mosquitto,nats,ferry-sync", "systems, in the order of each round (ferryprof: Ferry in process with pprof, whose address is printed)")
	rounds      = flag.Int("rounds", 3, "fan-in rounds (the median is reported)")
	count       = flag.Int("count", 300000, "messages per fan-in run, over all publishers")
	syncCount   = flag.Int("sync-count", 40000, "messages per fan-in run for Ferry with sync flush (an fsync per commit is slow)")
	publishers  = flag.Int("publishers", 4, "fan-in publishers")
	size        = flag.Int("size", 128, "payload bytes")
	window      = flag.Int("window", 1000, "QoS 1 publishes in flight per publisher")
	fleet       = flag.Int("fleet", 1000, "device-fleet publishers (0 skips)")
	fleetRate   = flag.Float64("fleet-rate", 10, "messages per second per fleet publisher")
	fleetDur    = flag.Duration("fleet-duration", 20*time.Second, "device-fleet run")
	fleetRounds = flag.Int("fleet-rounds", 3, "device-fleet rounds (the median p50 and p99 are reported)")
	idle        = flag.Int("idle", 10000, "idle connections (0 skips)")
	bgConns     = flag.Int("background", 0, "device-fleet runs: this many more connections, each publishing one QoS 1 message per --background-interval")
	bgInterval  = flag.Duration("background-interval", time.Minute, "how often each background connection publishes")
	timelines   = flag.String("fleet-timelines", "", "write each fleet round's messages to DIR/SYSTEM-ROUND.txt, one line each: delivered at (Unix ns), latency (ns)")
	profileDir  = flag.String("profile", "", "profile Ferry in process under the fan-in loads, writing profiles here, instead of the comparison")
	pin         = flag.Bool("pin", false, "run each broker on CPU 0 and this program on the others (taskset): on a small machine the two otherwise take CPU from each other, and the fleet's tail measures the scheduler as much as the broker (Go sizes GOMAXPROCS from the mask: Ferry gets one processor)")
)

type system struct {
	name  string
	count int // messages per fan-in run
	start func() (*broker, error)
}

func main() {
	flag.Parse()
	if *pin {
		pinSelf()
	}
	raiseFileLimit()
	tmp, err := os.MkdirTemp("", "bench-mqtt-bin")
	check(err)
	defer os.RemoveAll(tmp)
	if *profileDir != "" {
		if *profBin == "" {
			*profBin = build(tmp, ".", "./ferryprof", "ferryprof")
		}
		check(profile(*profileDir))
		return
	}
	if *ferryBin == "" {
		*ferryBin = build(tmp, *repo, "./cmd/ferry", "ferry")
	}
	if *profBin == "" && strings.Contains(*systemsF, "ferryprof") {
		*profBin = build(tmp, ".", "./ferryprof", "ferryprof")
	}
	var systems []system
	for _, name := range strings.Split(*systemsF, ",") {
		systems = append(systems, newSystem(name))
	}

	type fanIn struct{ q0, q1 []loadResult }
	fan := map[string]*fanIn{}
	for _, s := range systems {
		fan[s.name] = &fanIn{}
	}
	for round := 1; round <= *rounds; round++ {
		for _, s := range systems {
			b, err := s.start()
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, err)
				continue
			}
			for _, qos := range []byte{0, 1} {
				perPub := s.count / *publishers
				msgs := perPub * *publishers
				cpu0, cerr := b.cpu()
				r := runLoad(b.addr, *publishers, perPub, qos, *window, *size, 0, false, 5*time.Second)
				if cpu1, err := b.cpu(); err == nil && cerr == nil {
					r.cpuPerMsg = (cpu1 - cpu0) / time.Duration(msgs)
				}
				report(fmt.Sprintf("round %d %s fan-in QoS %d", round, s.name, qos), r)
				fmt.Fprintf(os.Stderr, "round %d %s fan-in QoS %d: broker CPU %s per message, load average %s\n", round, s.name, qos, us(r.cpuPerMsg), loadAvg())
				if qos == 0 {
					fan[s.name].q0 = append(fan[s.name].q0, r)
				} else {
					fan[s.name].q1 = append(fan[s.name].q1, r)
				}
			}
			b.stop()
		}
	}

	fleets := map[string][]loadResult{}
	if *fleet > 0 {
		interval := time.Duration(float64(time.Second) / *fleetRate)
		perDev := int(fleetDur.Seconds() * *fleetRate)
		for round := 1; round <= *fleetRounds; round++ {
			for _, s := range systems {
				b, err := s.start()
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, err)
					continue
				}
				var bg *background
				if *bgConns > 0 {
					if bg, err = startBackground(b.addr, *bgConns, *bgInterval, *size); err != nil {
						fmt.Fprintf(os.Stderr, "%s: background connections: %v\n", s.name, err)
						b.stop()
						continue
					}
				}
				cpu0, cerr := b.cpu()
				n0, nerr := b.counts()
				r := runLoad(b.addr, *fleet, perDev, 1, 16, *size, interval, true, 5*time.Second)
				msgs := int64(*fleet * perDev)
				if bg != nil {
					msgs += bg.sent.Load() // the background's publishes cost the broker too
				}
				if cpu1, err := b.cpu(); err == nil && cerr == nil {
					r.cpuPerMsg = (cpu1 - cpu0) / time.Duration(msgs)
				}
				if n1, err := b.counts(); err == nil && nerr == nil {
					r.counts = n1.since(n0, msgs)
				}
				report(fmt.Sprintf("round %d %s fleet %d×%.0f msg/s QoS 1", round, s.name, *fleet, *fleetRate), r)
				if bg != nil {
					fmt.Fprintf(os.Stderr, "round %d %s fleet background: %s\n", round, s.name, bg.close())
				}
				fmt.Fprintf(os.Stderr, "round %d %s fleet: broker CPU %s per message, load average %s\n", round, s.name, us(r.cpuPerMsg), loadAvg())
				fmt.Fprintf(os.Stderr, "round %d %s fleet: broker %s\n", round, s.name, r.counts)
				fmt.Fprintf(os.Stderr, "round %d %s fleet: %.2f%% of messages over 1 ms, %.2f%% over 2 ms\n", round, s.name, 100*r.over1ms, 100*r.over2ms)
				if *timelines != "" {
					path := filepath.Join(*timelines, fmt.Sprintf("%s-%d.txt", fileName(s.name), round))
					if err := writeTimeline(path, r.timeline); err != nil {
						fmt.Fprintf(os.Stderr, "%s: %v\n", s.name, err)
					}
				}
				if b.misc != "" {
					fmt.Fprintf(os.Stderr, "round %d %s fleet hops: %s\n", round, s.name, hops("http://"+b.misc+"/metrics"))
				}
				fleets[s.name] = append(fleets[s.name], r)
				b.stop()
			}
		}
	}

	perConn := map[string]string{}
	if *idle > 0 {
		for _, s := range systems {
			perConn[s.name] = measureIdle(s)
			fmt.Fprintf(os.Stderr, "%s idle: %s\n", s.name, perConn[s.name])
		}
	}

	fmt.Printf("\nMQTT, %d publishers → 1 subscriber on bench/#, %d-byte payloads, %d messages a run (Ferry sync flush: %d), QoS 1 window %d; median of %d rounds.\n",
		*publishers, *size, *count, *syncCount, *window, *rounds)
	fmt.Printf("Fleet: %d publishers × %.0f msg/s, QoS 1, %s, median of %d rounds (lost: all rounds)", *fleet, *fleetRate, *fleetDur, *fleetRounds)
	if *bgConns > 0 {
		fmt.Printf(", beside %d background connections publishing once every %s each", *bgConns, *bgInterval)
	}
	fmt.Printf(". Idle: %d connections.\n\n", *idle)
	fmt.Println("| system | QoS 0 delivered msg/s | QoS 0 publish msg/s | QoS 1 delivered msg/s | QoS 1 publish msg/s | lost / dup (all runs) | fleet p50 | fleet p99 | fleet lost | fleet broker CPU per message | RSS per idle connection |")
	fmt.Println("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
	for _, s := range systems {
		f := fan[s.name]
		p50, p99, flost, fcpu := "–", "–", "–", "–"
		if fl := fleets[s.name]; len(fl) > 0 {
			p50 = medianMs(fl, func(r loadResult) time.Duration { return r.p50 })
			p99 = medianMs(fl, func(r loadResult) time.Duration { return r.p99 })
			if v, ok := medianOf(fl, func(r loadResult) time.Duration { return r.cpuPerMsg }); ok {
				fcpu = us(v)
			}
			var lost int64
			for _, r := range fl {
				lost += r.lost
			}
			flost = fmt.Sprint(lost)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.name,
			median(f.q0, func(r loadResult) float64 { return r.delivered }),
			median(f.q0, func(r loadResult) float64 { return r.published }),
			median(f.q1, func(r loadResult) float64 { return r.delivered }),
			median(f.q1, func(r loadResult) float64 { return r.published }),
			lostDup(append(slices.Clone(f.q0), f.q1...)), p50, p99, flost, fcpu, perConn[s.name])
	}
	if *fleet > 0 {
		fmt.Println()
		for _, s := range systems {
			fl := fleets[s.name]
			reads, ok := medianOf(fl, func(r loadResult) float64 { return r.counts.reads })
			if !ok {
				continue
			}
			writes, _ := medianOf(fl, func(r loadResult) float64 { return r.counts.writes })
			switches, _ := medianOf(fl, func(r loadResult) float64 { return r.counts.switches })
			fmt.Printf("%s, fleet (medians): %s\n", s.name, perMsg{reads, writes, switches})
		}
	}
}

func newSystem(name string) system {
	switch name {
	case "ferry-async", "ferry-sync":
		flush := strings.TrimPrefix(name, "ferry-")
		n := *count
		if flush == "sync" {
			n = *syncCount
		}
		return system{fmt.Sprintf("Ferry (%s flush)", flush), n, func() (*broker, error) {
			return startFerry("Ferry", *ferryBin, "serve", "--flush", flush, "--mqtt-addr", "127.0.0.1:0",
				"--mqtt-ws-addr", "off", "--mqtt-tls-addr", "off", "--amqp-addr", "off", "--http-addr", "127.0.0.1:0", "--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0")
		}}
	case "ferryprof": // Ferry in process with pprof, to profile or trace a run: its address is logged
		return system{"Ferry (ferryprof, async flush)", *count, func() (*broker, error) {
			b, err := startFerry("Ferry (ferryprof)", *profBin, "--flush", "async")
			if err == nil {
				fmt.Fprintf(os.Stderr, "ferryprof pprof at http://%s/debug/pprof/\n", b.misc)
			}
			return b, err
		}}
	case "mosquitto":
		return system{"Mosquitto (no persistence)", *count, func() (*broker, error) { return startMosquitto(*mosqBin) }}
	case "nats":
		return system{"NATS (MQTT on JetStream, file storage)", *count, func() (*broker, error) { return startNATS(*natsBin) }}
	}
	check(fmt.Errorf("unknown system %q (ferry-async, ferry-sync, ferryprof, mosquitto, nats)", name))
	return system{}
}

// measureIdle opens --idle connections to a fresh broker and returns the
// growth of its RSS per connection.
func measureIdle(s system) string {
	b, err := s.start()
	if err != nil {
		return err.Error()
	}
	defer b.stop()
	time.Sleep(time.Second)
	before, err := b.rss()
	if err != nil {
		return err.Error()
	}
	ws, err := idleConnections(b.addr, *idle)
	if err != nil {
		return err.Error()
	}
	defer closeAll(ws)
	time.Sleep(3 * time.Second)
	after, err := b.rss()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%.1f KiB (%.0f → %.0f MiB)", float64(after-before)/float64(*idle)/1024, float64(before)/(1<<20), float64(after)/(1<<20))
}

func report(what string, r loadResult) {
	line := fmt.Sprintf("%s: delivered %.0f msg/s, published %.0f msg/s, lost %d, dup %d", what, r.delivered, r.published, r.lost, r.dups)
	if r.p50 > 0 {
		line += fmt.Sprintf(", latency p50 %s p99 %s max %s", ms(r.p50), ms(r.p99), ms(r.max))
	}
	if r.err != nil {
		line += ", error: " + r.err.Error()
	}
	fmt.Fprintln(os.Stderr, line)
}

// median is the median of f over the runs without an error, "–" if none.
func median(rs []loadResult, f func(loadResult) float64) string {
	if v, ok := medianOf(rs, f); ok {
		return thousands(v)
	}
	return "–"
}

// medianMs is median for a time, in milliseconds.
func medianMs(rs []loadResult, f func(loadResult) time.Duration) string {
	if v, ok := medianOf(rs, f); ok {
		return ms(v)
	}
	return "–"
}

// medianOf is the median of f over the runs without an error; false if
// every run failed.
func medianOf[T cmp.Ordered](rs []loadResult, f func(loadResult) T) (T, bool) {
	var v []T
	for _, r := range rs {
		if r.err == nil {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		var zero T
		return zero, false
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

func lostDup(rs []loadResult) string {
	var lost, dup int64
	for _, r := range rs {
		lost += r.lost
		dup += r.dups
	}
	return fmt.Sprintf("%d / %d", lost, dup)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

// loadAvg is this machine's load average over 1, 5 and 15 minutes: the
// other work on a shared machine, besides the run's own.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func thousands(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// raiseFileLimit lifts the open-file limit to its hard maximum, for the
// idle connections; set here, it is inherited by the brokers started.
func raiseFileLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	if *idle > 0 && l.Max < uint64(*idle)+1000 {
		fmt.Fprintf(os.Stderr, "open-file limit %d is below --idle %d: raise it (ulimit -Hn) or lower --idle\n", l.Max, *idle)
	}
}

func build(dir, srcDir, pkg, name string) string {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir, cmd.Stdout, cmd.Stderr = srcDir, os.Stderr, os.Stderr
	check(cmd.Run())
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqtt bench:", err)
		os.Exit(1)
	}
}

// profile runs the QoS 0 and QoS 1 fan-in loads against ferryprof, each on
// a fresh store, and writes a CPU profile and before/after allocation
// profiles per load; it prints allocations per delivered message.
func profile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	per := *count / *publishers
	for _, qos := range []byte{0, 1} {
		b, err := startFerry("Ferry (in process, async flush)", *profBin, "--flush", "async")
		if err != nil {
			return err
		}
		base := "http://" + b.misc
		before, err := memstats(base)
		if err != nil {
			b.stop()
			return err
		}
		if err := fetch(base+"/debug/pprof/allocs", filepath.Join(dir, fmt.Sprintf("allocs-before-qos%d.pprof", qos))); err != nil {
			b.stop()
			return err
		}
		cpuDone := make(chan error, 1)
		go func() {
			cpuDone <- fetch(base+"/debug/pprof/profile?seconds=5", filepath.Join(dir, fmt.Sprintf("cpu-qos%d.pprof", qos)))
		}()
		r := runLoad(b.addr, *publishers, per, qos, *window, *size, 0, false, 5*time.Second)
		report(fmt.Sprintf("profile fan-in QoS %d", qos), r)
		if err := <-cpuDone; err != nil {
			fmt.Fprintln(os.Stderr, "cpu profile:", err)
		}
		after, err := memstats(base)
		if err == nil {
			err = fetch(base+"/debug/pprof/allocs", filepath.Join(dir, fmt.Sprintf("allocs-after-qos%d.pprof", qos)))
		}
		b.stop()
		if err != nil {
			return err
		}
		msgs := float64(int64(per**publishers) - r.lost)
		fmt.Printf("QoS %d: %.0f msg/s delivered; %.1f allocations and %.0f bytes allocated per message (publish + store + deliver), %.2f GCs per 100k messages\n",
			qos, r.delivered, float64(after.Mallocs-before.Mallocs)/msgs, float64(after.TotalAlloc-before.TotalAlloc)/msgs,
			float64(after.NumGC-before.NumGC)/msgs*1e5)
	}
	fmt.Printf("profiles in %s: go tool pprof -top cpu-qos0.pprof; go tool pprof -sample_index=alloc_space -diff_base allocs-before-qos0.pprof allocs-after-qos0.pprof\n", dir)
	return nil
}

func memstats(base string) (runtime.MemStats, error) {
	var v struct{ Memstats runtime.MemStats }
	resp, err := http.Get(base + "/debug/vars")
	if err != nil {
		return v.Memstats, err
	}
	defer resp.Body.Close()
	return v.Memstats, json.NewDecoder(resp.Body).Decode(&v)
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// pinnedEnv marks the process pinSelf started.
const pinnedEnv = "BENCH_MQTT_PINNED"

// pinSelf runs this program again on every CPU but the first, which the
// brokers get (pinned).
func pinSelf() {
	if os.Getenv(pinnedEnv) != "" {
		return
	}
	if runtime.NumCPU() < 2 {
		check(fmt.Errorf("--pin needs at least 2 CPUs; this machine has %d", runtime.NumCPU()))
	}
	taskset, err := exec.LookPath("taskset")
	check(err)
	self, err := os.Executable()
	check(err)
	args := append([]string{"taskset", "-c", fmt.Sprintf("1-%d", runtime.NumCPU()-1), self}, os.Args[1:]...)
	check(syscall.Exec(taskset, args, append(os.Environ(), pinnedEnv+"=1")))
}

// pinned returns cmd to run on CPU 0 (taskset) under --pin, else cmd.
func pinned(cmd *exec.Cmd) *exec.Cmd {
	if !*pin {
		return cmd
	}
	p := exec.Command("taskset", append([]string{"-c", "0", cmd.Path}, cmd.Args[1:]...)...)
	p.Env, p.Dir = cmd.Env, cmd.Dir
	return p
}

// fileName makes a system's name a file name: "Ferry (async flush)" is
// "ferry-async-flush".
func fileName(name string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}), "-")
}
