package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/controller"
)

// The replicated scenario (--replicated): a Ferry sync group of three
// against a NATS JetStream cluster of three with streams of three replicas,
// each on loopback, started fresh for every run; RabbitMQ's quorum queue
// where a RabbitMQ runs (a single node there, so no replicas). Besides the
// load, each replicated run measures a failover: kill -9 of the leader
// under a steady publish, to the first acknowledged write after it.

// failoverTarget is a replicated system whose leader can be killed.
type failoverTarget interface {
	target
	// sender opens a connection for synchronous confirmed publishes to topic.
	sender(topic string) (send func(ctx context.Context, body []byte) error, close func(), err error)
	// killLeader kills the leader of topic with SIGKILL, waits until it is
	// gone, and says which it was and when the signal was sent.
	killLeader(topic string) (who string, at time.Time, err error)
}

// pidsOf are the target's server processes: all of a cluster's, for the
// CPU per message.
func pidsOf(t target) []int {
	if c, ok := t.(interface{ pids() []int }); ok {
		return c.pids()
	}
	return []int{t.pid()}
}

// sumUsage adds the usage of processes.
func sumUsage(pids []int) usage {
	var u usage
	for _, pid := range pids {
		p := readUsage(pid)
		if !p.available {
			return usage{}
		}
		u.cpu += p.cpu
		u.syscalls += p.syscalls
		u.available = true
	}
	return u
}

// stopAll stops the processes of ps at once and returns when all ended.
func stopAll(ps iter.Seq[*proc]) {
	var wg sync.WaitGroup
	for p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// kill9 kills p, waits for it to end and returns when the signal was sent.
func kill9(p *proc) (time.Time, error) {
	at := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return at, err
	}
	select {
	case <-p.done:
		return at, nil
	case <-time.After(10 * time.Second):
		return at, errors.New("killed process still running after 10 s")
	}
}

// measureFailover runs --producers senders, each publishing synchronously
// (3 s timeout, 50 ms pause after an error) on its own connection; after
// warm it kills the leader and returns the time from the kill signal to
// the first acknowledgement of a publish sent once the leader was gone
// (so that no publish the old leader answered counts).
func measureFailover(t failoverTarget, topic string, size int, warm time.Duration) (time.Duration, string, error) {
	var (
		mark     atomic.Pointer[time.Time] // once the leader is gone
		acked    atomic.Int64
		failures atomic.Int64
	)
	firstAck := make(chan time.Time, 1) // of the first publish sent after mark
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	body := make([]byte, size)
	var closers []func()
	for range *producers {
		send, closeFn, err := t.sender(topic)
		if err != nil {
			stop()
			wg.Wait()
			for _, c := range closers {
				c()
			}
			return 0, "", fmt.Errorf("failover sender: %w", err)
		}
		closers = append(closers, closeFn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := send(sctx, body)
				cancel()
				if err != nil {
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				acked.Add(1)
				if m := mark.Load(); m != nil && start.After(*m) {
					select {
					case firstAck <- time.Now():
					default: // not the first
					}
				}
			}
		}()
	}
	defer func() {
		stop()
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}()
	time.Sleep(warm)
	if acked.Load() == 0 {
		return 0, "", fmt.Errorf("failover: no acknowledged publish in %v before the kill (%d failed)", warm, failures.Load())
	}
	who, killedAt, err := t.killLeader(topic)
	if err != nil {
		return 0, "", fmt.Errorf("failover: kill: %w", err)
	}
	now := time.Now()
	mark.Store(&now)
	select {
	case first := <-firstAck:
		return first.Sub(killedAt), who, nil
	case <-time.After(60 * time.Second):
		return 0, who, fmt.Errorf("failover: no acknowledged write within 60 s of killing %s", who)
	}
}

// --- Ferry: a sync group of three brokers, three NameServer-controllers ---

// ferryGroupSecret is the cluster secret the bench's processes share.
const ferryGroupSecret = "bench-peers-replication-secret-0123456789"

// groupEnv hands the group's processes the secret.
var groupEnv = []string{"FERRY_CLUSTER_SECRET=" + ferryGroupSecret}

var ctlRe = regexp.MustCompile(`msg="controller listening".* addr=(\S+)`)

type ferryGroup struct {
	ferry                       // the clients' side: publisher, subscribe
	dir      string             // removed at close
	namesrvs []*proc            // ferry namesrv --controller
	brokers  map[int64]*proc    // by broker id
	ctl      *controller.Client // asks the controllers who is master
	group    string             // the broker group's name
	mu       sync.Mutex         // guards killed
	killed   map[int64]bool     // brokers killed by a failover
}

// startFerryGroup starts three `ferry namesrv --controller` (the
// controllers' Raft group inside the NameServers) and three `ferry broker`
// of one group in sync replication mode, min-insync-replicas 2, and waits
// until the controllers report a master and all three in sync.
func startFerryGroup(bin string) (target, error) {
	dir, err := os.MkdirTemp("", "bench-peers-ferry-group")
	if err != nil {
		return nil, err
	}
	g := &ferryGroup{dir: dir, brokers: map[int64]*proc{}, killed: map[int64]bool{}, group: "bench-group"}
	fail := func(err error) (target, error) {
		g.close()
		return nil, err
	}
	var peers []string
	for i := 1; i <= 3; i++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d", i, port))
	}
	var ctls []string
	for i := 1; i <= 3; i++ {
		var ns, ctl string
		p, err := startReady(filepath.Join(dir, fmt.Sprint("ctl", i)), bin, []string{"namesrv", "--controller",
			"--node-id", fmt.Sprint(i), "--raft-peers", strings.Join(peers, ","),
			"--namesrv-addr", "127.0.0.1:0", "--controller-addr", "127.0.0.1:0", "--http-addr", "off"},
			groupEnv, func(line string) {
				if m := nsRe.FindStringSubmatch(line); m != nil {
					ns = strings.Trim(m[1], `"`)
				}
				if m := ctlRe.FindStringSubmatch(line); m != nil {
					ctl = strings.Trim(m[1], `"`)
				}
			})
		if err != nil {
			return fail(fmt.Errorf("ferry namesrv %d: %w", i, err))
		}
		g.namesrvs = append(g.namesrvs, p)
		if ns == "" || ctl == "" {
			return fail(fmt.Errorf("ferry namesrv %d: no NameServer or controller address in its log:\n%s", i, p.tail()))
		}
		g.ns = append(g.ns, ns)
		ctls = append(ctls, ctl)
	}
	g.ctl = controller.NewClient(ctls, []byte(ferryGroupSecret), discard)
	for id := range int64(3) {
		p, err := startReady(filepath.Join(dir, fmt.Sprint("broker", id)), bin, []string{"broker",
			"--namesrv", strings.Join(g.ns, ","), "--controllers", strings.Join(ctls, ","),
			"--broker-name", g.group, "--broker-id", fmt.Sprint(id),
			"--replication-mode", "sync", "--min-insync-replicas", "2",
			"--native-addr", "127.0.0.1:0", "--replication-addr", "127.0.0.1:0",
			"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--mqtt-tls-addr", "off", "--amqp-addr", "off", "--http-addr", "off"}, groupEnv, nil)
		if err != nil {
			return fail(fmt.Errorf("ferry broker %d: %w", id, err))
		}
		g.brokers[id] = p
	}
	if _, err := g.waitGroup(60*time.Second, func(gs controller.GroupState) bool { return gs.MasterID >= 0 && len(gs.InSync) == 3 }); err != nil {
		return fail(err)
	}
	if err := createFerryTopics(g.ns, "bench", "lat", "fail"); err != nil {
		return fail(err)
	}
	return g, nil
}

// startReady starts a ferry process in dir (its data directory dir/data)
// with env added to the harness's environment, and waits for its
// `ferry ready` line.
func startReady(dir, bin string, args, env []string, scan func(string)) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ready := make(chan struct{}, 1)
	p, err := startProcEnv(dir, bin, append(args, "--data-dir", filepath.Join(dir, "data")),
		env, func(line string) {
			if scan != nil {
				scan(line)
			}
			if strings.Contains(line, `msg="ferry ready"`) {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		})
	if err != nil {
		return nil, err
	}
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("exited at start:\n%s", p.tail())
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("not ready in 30 s:\n%s", p.tail())
	}
}

// waitGroup polls the controllers until the group's state satisfies ok.
func (g *ferryGroup) waitGroup(limit time.Duration, ok func(controller.GroupState) bool) (controller.GroupState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last controller.GroupState
	for ctx.Err() == nil {
		if gs, err := g.ctl.Groups(ctx); err == nil {
			for _, s := range gs {
				if s.Group == g.group {
					last = s
					if ok(s) {
						return s, nil
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last, fmt.Errorf("ferry group: not ready within %v; the controllers report %+v", limit, last)
}

// pid is the master's process (the one the clients talk to).
func (g *ferryGroup) pid() int {
	gs, err := g.waitGroup(5*time.Second, func(gs controller.GroupState) bool { return gs.MasterID >= 0 })
	if err != nil || g.brokers[gs.MasterID] == nil {
		return 0
	}
	return g.brokers[gs.MasterID].cmd.Process.Pid
}

// pids are the three brokers and the three NameServer-controllers.
func (g *ferryGroup) pids() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for id, p := range g.brokers {
		if !g.killed[id] {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	for _, p := range g.namesrvs {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

func (g *ferryGroup) close() {
	if g.ctl != nil {
		g.ctl.Close()
	}
	stopAll(maps.Values(g.brokers))
	stopAll(slices.Values(g.namesrvs))
	os.RemoveAll(g.dir)
}

func (g *ferryGroup) sender(topic string) (func(context.Context, []byte) error, func(), error) {
	p, err := client.NewProducer(client.WithNameServers(g.ns...), client.WithLogger(discard))
	if err != nil {
		return nil, nil, err
	}
	send := func(ctx context.Context, body []byte) error {
		_, err := p.Send(ctx, &client.Message{Topic: topic, Body: body})
		return err
	}
	return send, func() { p.Close() }, nil
}

func (g *ferryGroup) killLeader(string) (string, time.Time, error) {
	gs, err := g.waitGroup(10*time.Second, func(gs controller.GroupState) bool { return gs.MasterID >= 0 && len(gs.InSync) == 3 })
	if err != nil {
		return "", time.Time{}, err
	}
	p := g.brokers[gs.MasterID]
	g.mu.Lock()
	g.killed[gs.MasterID] = true
	g.mu.Unlock()
	at, err := kill9(p)
	return fmt.Sprintf("broker %d, master of epoch %d", gs.MasterID, gs.Epoch), at, err
}

// --- NATS JetStream: three nats-server clustered on loopback, R3 streams ---

type natsCluster struct {
	natsJS
	procs map[string]*proc // by server name
	urls  string           // the three client URLs, comma separated
	dir   string
}

func startNATSCluster(bin string) (target, error) {
	dir, err := os.MkdirTemp("", "bench-peers-nats-r3")
	if err != nil {
		return nil, err
	}
	c := &natsCluster{procs: map[string]*proc{}, dir: dir}
	fail := func(err error) (target, error) {
		c.close()
		return nil, err
	}
	var ports, cports []int
	for range 3 {
		p, err := freePort()
		if err != nil {
			return fail(err)
		}
		cp, err := freePort()
		if err != nil {
			return fail(err)
		}
		ports, cports = append(ports, p), append(cports, cp)
	}
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cports[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	c.urls = strings.Join(urls, ",")
	for i := range 3 {
		name := fmt.Sprint("n", i+1)
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
		p, err := startProc(d, bin, []string{"-js", "-n", name, "-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]),
			"-sd", filepath.Join(d, "js"), "--cluster_name", "bench", "--cluster", routes[i],
			"--routes", strings.Join(routes, ",")}, nil)
		if err != nil {
			return fail(err)
		}
		c.procs[name] = p
	}
	c.url = c.urls
	for i := 0; i < 200; i++ {
		if c.conn, err = nats.Connect(c.urls); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fail(err)
	}
	c.js, _ = jetstream.New(c.conn)
	// The cluster elects its JetStream meta leader first: retry until then.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, t := range []string{"bench", "lat", "fail"} {
		cfg := jetstream.StreamConfig{Name: strings.ToUpper(t), Subjects: []string{t}, Storage: jetstream.FileStorage, Replicas: 3}
		for {
			// A request sent before the meta leader is elected gets no
			// answer: each attempt has its own timeout.
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = c.js.CreateStream(actx, cfg)
			acancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fail(fmt.Errorf("nats: stream %s: %w", cfg.Name, err))
		}
	}
	return c, nil
}

// pid is the leader of the stream the load publishes to.
func (c *natsCluster) pid() int {
	if name, err := c.leader("bench"); err == nil && c.procs[name] != nil {
		return c.procs[name].cmd.Process.Pid
	}
	return 0
}

func (c *natsCluster) pids() []int {
	var out []int
	for _, p := range c.procs {
		select {
		case <-p.done:
		default:
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

func (c *natsCluster) close() {
	if c.conn != nil {
		c.conn.Close()
	}
	stopAll(maps.Values(c.procs))
	os.RemoveAll(c.dir)
}

// leader is the name of the server leading topic's stream.
func (c *natsCluster) leader(topic string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, strings.ToUpper(topic))
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", strings.ToUpper(topic))
	}
	return info.Cluster.Leader, nil
}

func (c *natsCluster) sender(topic string) (func(context.Context, []byte) error, func(), error) {
	conn, err := nats.Connect(c.urls)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	send := func(ctx context.Context, body []byte) error {
		_, err := js.Publish(ctx, topic, body)
		return err
	}
	return send, conn.Close, nil
}

func (c *natsCluster) killLeader(topic string) (string, time.Time, error) {
	name, err := c.leader(topic)
	if err != nil {
		return "", time.Time{}, err
	}
	p := c.procs[name]
	if p == nil {
		return "", time.Time{}, fmt.Errorf("stream leader %q is not one of the cluster's servers", name)
	}
	at, err := kill9(p)
	return "server " + name + ", leader of stream " + strings.ToUpper(topic), at, err
}
