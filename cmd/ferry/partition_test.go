package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/controller"
	"github.com/ferrymq/ferry/remoting"
	"github.com/ferrymq/ferry/replication/replconf"
)

// The partition tests run a replicated group with every process in a
// network namespace of its own (netLab): the three NameServer-controllers
// in nodes 0..2, broker id in node 3+id. Inside a node the ports are fixed
// (each node has its own port space); the test process, in the machine's
// namespace, produces and consumes through the lab and still reaches a node
// that Cut isolated from the others.

// Fixed ports inside a lab node.
const (
	labNamesrvPort    = "9876"
	labControllerPort = "9878"
	labRaftPort       = "9879"
	labNativePort     = "10911"
	labReplPort       = "10912"
)

// partitionBound is how long a lease lasts (replication.lease, 2.5 s): a
// master cut off from the controllers acknowledges nothing after it.
var partitionBound = replconf.Default().Lease

// partitionRounds is how many masters TestPartitionIsolatesMaster cuts off:
// one in every run, more with the soak build tag (soak_test.go).
var partitionRounds = 1

// brokerNode is the lab node of broker id.
func brokerNode(id int64) int { return 3 + int(id) }

// run starts ferry with args, in node when the lab has a network.
func (l *groupLab) run(node int, args ...string) *ferryProc {
	l.t.Helper()
	if l.net == nil {
		return startFerryEnv(l.t, l.bin, l.env, args...)
	}
	return startFerryEnv(l.t, "ip", l.env, l.net.Command(node, l.bin, args...)...)
}

// newNetGroupLab is newGroupLab in a netLab of six nodes; env is added to
// every process's environment.
func newNetGroupLab(t *testing.T, group string, env []string, brokerArgs ...string) *groupLab {
	t.Helper()
	nl := newNetLab(t, 6) // skips without root
	l := &groupLab{t: t, bin: buildFerry(t), env: append([]string{"FERRY_CLUSTER_SECRET=" + failoverSecret}, env...),
		group: group, brokers: map[int64]*labBroker{}, args: brokerArgs, net: nl}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, net.JoinHostPort(nl.Addr(i), labRaftPort)))
	}
	for i := range 3 {
		host := nl.Addr(i)
		p := l.run(i, "namesrv", "--controller", "--node-id", fmt.Sprint(i+1), "--raft-peers", strings.Join(peers, ","),
			"--namesrv-addr", net.JoinHostPort(host, labNamesrvPort), "--controller-addr", net.JoinHostPort(host, labControllerPort),
			"--http-addr", "off", "--data-dir", filepath.Join(t.TempDir(), "ctl"))
		l.ctlProc = append(l.ctlProc, p)
		l.nss = append(l.nss, net.JoinHostPort(host, labNamesrvPort))
		l.ctls = append(l.ctls, net.JoinHostPort(host, labControllerPort))
	}
	for i, p := range l.ctlProc {
		if !p.waitLog(`msg="ferry ready"`, 30*time.Second) {
			t.Fatalf("namesrv/controller %d did not start:\n%s", i+1, p.log())
		}
	}
	l.ctl = controller.NewClient(l.ctls, []byte(failoverSecret), nil)
	t.Cleanup(func() { l.ctl.Close() })
	return l
}

// ctlLeader is the index of the controller that leads by its log, -1 when
// none does; exclude is left out.
func (l *groupLab) ctlLeader(exclude int) int {
	for i, p := range l.ctlProc {
		select {
		case <-p.done:
			continue
		default:
		}
		lg := p.log()
		if i != exclude && strings.LastIndex(lg, `msg="controller: leading"`) > strings.LastIndex(lg, `msg="controller: no longer the leader"`) {
			return i
		}
	}
	return -1
}

// waitCtlLeader waits for a controller other than exclude to lead.
func (l *groupLab) waitCtlLeader(ctx context.Context, exclude int) int {
	l.t.Helper()
	for {
		if i := l.ctlLeader(exclude); i >= 0 {
			return i
		}
		select {
		case <-ctx.Done():
			l.t.Fatalf("no controller leads (other than %d)", exclude+1)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// others is every lab node but node.
func (l *groupLab) others(node int) []int {
	var o []int
	for i := range l.net.nodes {
		if i != node {
			o = append(o, i)
		}
	}
	return o
}

// ack is one acknowledged send: the host of the broker that stored it.
type ack struct {
	host string
	at   time.Time
}

// loadRun is a producer load and a consumer group on the lab's topic, with
// every acknowledgement recorded.
type loadRun struct {
	t       *testing.T
	led     *ledger
	mu      sync.Mutex
	acks    []ack
	stop    context.CancelFunc
	senders *sync.WaitGroup
	closers []func() error
}

// startLoad creates topic on the group's master and runs four senders and
// a consumer group on it.
func startLoad(ctx context.Context, t *testing.T, lab *groupLab, topic string) *loadRun {
	t.Helper()
	admin, err := client.NewAdmin(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	r := &loadRun{t: t, led: newLedger(), closers: []func() error{admin.Close}}
	t.Cleanup(r.close)
	createTopicOnceRegistered(ctx, t, admin, lab.nss[0], topic, 4)
	r.led.onAck = func(res *client.SendResult, at time.Time) {
		addr, _, err := remoting.ParseOffsetMsgID(res.OffsetMsgID)
		host, _, _ := net.SplitHostPort(addr)
		if err != nil {
			host = "?"
		}
		r.mu.Lock()
		r.acks = append(r.acks, ack{host, at})
		r.mu.Unlock()
	}
	r.led.consumeFromFirst(ctx, t, lab.nss, topic+"-readers", topic)
	prod, err := client.NewProducer(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	r.closers = append(r.closers, prod.Close)
	loadCtx, stop := context.WithCancel(ctx)
	r.stop = stop
	r.senders = r.led.produce(loadCtx, t, prod, topic, 4)
	return r
}

func (r *loadRun) close() {
	if r.stop != nil {
		r.stop()
		r.senders.Wait()
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
}

// lastAck is the last acknowledgement by host, zero when none.
func (r *loadRun) lastAck(host string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.acks) - 1; i >= 0; i-- {
		if r.acks[i].host == host {
			return r.acks[i].at
		}
	}
	return time.Time{}
}

// waitAck waits up to limit for an acknowledgement by host (any host when
// empty) after since, and returns its time.
func (r *loadRun) waitAck(host string, since time.Time, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	for n := 0; ; {
		r.mu.Lock()
		for ; n < len(r.acks); n++ {
			if a := r.acks[n]; a.at.After(since) && (host == "" || a.host == host) {
				r.mu.Unlock()
				return a.at, true
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// acksBetween counts the acknowledgements in [from, to) and the longest
// gap between two of them (from from, to to).
func (r *loadRun) acksBetween(from, to time.Time) (n int, gap time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := from
	for _, a := range r.acks {
		if a.at.Before(from) || !a.at.Before(to) {
			continue
		}
		n++
		gap = max(gap, a.at.Sub(prev))
		prev = a.at
	}
	return n, max(gap, to.Sub(prev))
}

// finish stops the load and checks that every acknowledged message was
// consumed, reporting the checker's verdict.
func (r *loadRun) finish() verdict {
	r.t.Helper()
	r.stop()
	r.senders.Wait()
	return checkLedger(r.t, r.led)
}

// checkLedger waits for every acknowledged message of led to be received,
// and fails the test on a loss.
func checkLedger(t *testing.T, led *ledger) verdict {
	t.Helper()
	v := led.waitAll(60 * time.Second)
	t.Logf("checker: %v", v)
	if len(v.Lost) > 0 {
		t.Fatalf("acknowledged messages lost: %v", v)
	}
	if v.Acked == 0 {
		t.Fatal("no message was acknowledged")
	}
	return v
}

func allInSync(gs controller.GroupState) bool { return gs.MasterID >= 0 && len(gs.InSync) == 3 }

// startSyncGroup starts brokers 0..2 of a sync group and waits until all
// three are in sync.
func startSyncGroup(ctx context.Context, lab *groupLab) controller.GroupState {
	for id := range int64(3) {
		lab.start(id)
	}
	return lab.waitState(ctx, "a master and three in sync", allInSync)
}

var syncGroupArgs = []string{"--replication-mode", "sync", "--min-insync-replicas", "2"}

// A sync group's master cut off from the controllers and its replicas,
// while its producers still reach it, stops acknowledging within its lease;
// the controllers elect another, the producers carry on there, and once the
// partition heals the old master rejoins as a replica, cutting what it
// alone had: nothing it acknowledged is lost.
func TestPartitionIsolatesMaster(t *testing.T) {
	lab := newNetGroupLab(t, "isolated-master", nil, syncGroupArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+40*partitionRounds)*time.Second)
	defer cancel()
	startSyncGroup(ctx, lab)
	load := startLoad(ctx, t, lab, "IsolatedMaster")
	var stops []time.Duration
	for round := 1; round <= partitionRounds; round++ {
		time.Sleep(2 * time.Second)
		gs := lab.waitState(ctx, "three in sync", allInSync)
		old := gs.MasterID
		oldNode := brokerNode(old)
		oldHost := lab.net.Addr(oldNode)
		if _, ok := load.waitAck(oldHost, time.Now().Add(-time.Second), 10*time.Second); !ok {
			t.Fatalf("round %d: no write acknowledged by the master %d before the cut", round, old)
		}
		oldProc := lab.brokers[old].proc
		logFrom := len(oldProc.log())

		cut := time.Now()
		lab.net.Cut(oldNode, lab.others(oldNode)...)
		ns := lab.waitState(ctx, "a new master", func(g controller.GroupState) bool { return g.MasterID != old && g.Epoch > gs.Epoch })
		elected := time.Since(cut)
		newHost := lab.net.Addr(brokerNode(ns.MasterID))
		firstNew, ok := load.waitAck(newHost, cut, 30*time.Second)
		if !ok {
			t.Fatalf("round %d: no write acknowledged by the new master %d within 30 s of its election; its log:\n%s\nNameServer 1's:\n%s",
				round, ns.MasterID, tail(lab.brokers[ns.MasterID].proc.log(), 60), tail(lab.ctlProc[0].log(), 30))
		}
		time.Sleep(2 * time.Second) // writes on the new master while the old one is still cut off
		lastOld := load.lastAck(oldHost)
		if lastOld.After(firstNew) {
			t.Errorf("round %d: the old master acknowledged a write at %v, after the new master's first at %v: two masters acknowledged at once",
				round, lastOld.Sub(cut), firstNew.Sub(cut))
		}
		if !strings.Contains(oldProc.log()[logFrom:], "lease expired") {
			t.Errorf("round %d: the cut-off master did not log its lease's expiry:\n%s", round, tail(oldProc.log(), 30))
		}

		heal := time.Now()
		logFrom = len(oldProc.log())
		lab.net.Heal(oldNode, lab.others(oldNode)...)
		lab.waitState(ctx, "three in sync after the heal", func(g controller.GroupState) bool { return allInSync(g) && g.MasterID == ns.MasterID })
		rejoined := time.Since(heal)
		healLog := oldProc.log()[logFrom:]
		cutBytes := regexpFind(healLog, `diverges from the master's; cutting it.* bytes=(\d+)`)
		if i := strings.LastIndex(healLog, "no longer master"); i < 0 || !strings.Contains(healLog[i:], "this broker is a replica") {
			t.Errorf("round %d: the old master did not become a replica:\n%s", round, tail(oldProc.log(), 30))
		}
		stops = append(stops, lastOld.Sub(cut))
		t.Logf("round %d: master %d (epoch %d) cut off: last write it acknowledged %v after the cut (bound: the %v lease); broker %d master of epoch %d %v after the cut, first write acknowledged there %v after it; healed, the old master back in sync as a replica in %v, cutting %s bytes it alone had",
			round, old, gs.Epoch, lastOld.Sub(cut).Round(time.Millisecond), partitionBound, ns.MasterID, ns.Epoch,
			elected.Round(10*time.Millisecond), firstNew.Sub(cut).Round(10*time.Millisecond), rejoined.Round(10*time.Millisecond), orNone(cutBytes))
	}
	time.Sleep(time.Second)
	v := load.finish()
	t.Logf("last acknowledgement of a cut-off master after the cut, per round: %v (bound %v); duplicated %v, out of order %v",
		stops, partitionBound, v.Duplicated, v.OutOfOrder)
}

// A replica cut off from everyone: writes go on with the two others
// (min-insync-replicas 2 of 3), the replica leaves the in-sync set after
// max-lag-time and rejoins it after the heal.
func TestPartitionIsolatesReplica(t *testing.T) {
	const maxLagTime = 2 * time.Second
	lab := newNetGroupLab(t, "isolated-replica", []string{"FERRY_REPLICATION_MAX_LAG_TIME=" + maxLagTime.String()}, syncGroupArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startSyncGroup(ctx, lab)
	load := startLoad(ctx, t, lab, "IsolatedReplica")
	time.Sleep(2 * time.Second)
	gs := lab.waitState(ctx, "three in sync", allInSync)
	rep := (gs.MasterID + 1) % 3
	node := brokerNode(rep)

	cut := time.Now()
	lab.net.Cut(node, lab.others(node)...)
	shrunk := lab.waitState(ctx, "the replica out of the in-sync set", func(g controller.GroupState) bool { return !slices.Contains(g.InSync, rep) })
	left := time.Since(cut)
	time.Sleep(2 * time.Second) // writes with two in sync
	during, gap := load.acksBetween(cut, time.Now())
	if during == 0 {
		t.Errorf("no write acknowledged while replica %d was cut off", rep)
	}
	if shrunk.MasterID != gs.MasterID || shrunk.Epoch != gs.Epoch {
		t.Errorf("isolating replica %d changed the master: %+v, was %+v", rep, shrunk, gs)
	}

	heal := time.Now()
	lab.net.Heal(node, lab.others(node)...)
	lab.waitState(ctx, "three in sync after the heal", allInSync)
	rejoined := time.Since(heal)
	time.Sleep(time.Second)
	v := load.finish()
	t.Logf("replica %d cut off: out of the in-sync set %v after the cut (max-lag-time %v); %d writes acknowledged meanwhile, longest pause %v; back in sync %v after the heal; duplicated %v, out of order %v",
		rep, left.Round(10*time.Millisecond), maxLagTime, during, gap.Round(time.Millisecond), rejoined.Round(10*time.Millisecond), v.Duplicated, v.OutOfOrder)
}

// The controller leader cut off from everyone: the two others elect a
// leader of their own, and the group goes on with its master and epoch.
func TestPartitionIsolatesControllerLeader(t *testing.T) {
	lab := newNetGroupLab(t, "isolated-leader", nil, syncGroupArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startSyncGroup(ctx, lab)
	load := startLoad(ctx, t, lab, "IsolatedLeader")
	time.Sleep(2 * time.Second)
	gs := lab.waitState(ctx, "three in sync", allInSync)
	leader := lab.waitCtlLeader(ctx, -1)

	cut := time.Now()
	lab.net.Cut(leader, lab.others(leader)...)
	next := lab.waitCtlLeader(ctx, leader)
	elected := time.Since(cut)
	time.Sleep(6 * time.Second) // longer than controller.master-timeout: a wrongly deposed master would show
	during, gap := load.acksBetween(cut, time.Now())
	after := lab.waitState(ctx, "the group's state from the new leader", func(controller.GroupState) bool { return true })
	if after.MasterID != gs.MasterID || after.Epoch != gs.Epoch {
		t.Errorf("the controller leader's partition changed the master: %+v, was %+v", after, gs)
	}
	if during == 0 {
		t.Errorf("no write acknowledged while the controller leader was cut off")
	}

	lab.net.Heal(leader, lab.others(leader)...)
	lab.waitState(ctx, "three in sync after the heal", allInSync)
	time.Sleep(time.Second)
	v := load.finish()
	t.Logf("controller %d (leader) cut off: controller %d leads %v after the cut; master %d of epoch %d kept; %d writes acknowledged in the %v after the cut, longest pause %v; duplicated %v, out of order %v",
		leader+1, next+1, elected.Round(10*time.Millisecond), gs.MasterID, gs.Epoch, during, time.Since(cut).Round(time.Second),
		gap.Round(time.Millisecond), v.Duplicated, v.OutOfOrder)
}

// kill -9 of the controller leader at the moment the group's master is
// killed: the two controllers left elect a leader, and it a new master.
func TestKillControllerLeaderAndMaster(t *testing.T) {
	lab := newGroupLab(t, "leaderless", syncGroupArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startSyncGroup(ctx, lab)
	load := startLoad(ctx, t, lab, "Leaderless")
	time.Sleep(2 * time.Second)
	gs := lab.waitState(ctx, "three in sync", allInSync)
	leader := lab.waitCtlLeader(ctx, -1)

	load.led.markFailover()
	if err := lab.ctlProc[leader].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lab.kill9(gs.MasterID)
	lab.ctlProc[leader].wait(t, 10*time.Second)
	took, err := load.led.failoverTime(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	next := lab.waitCtlLeader(ctx, leader)
	ns := lab.waitState(ctx, "a new master", func(g controller.GroupState) bool { return g.MasterID != gs.MasterID && g.Epoch > gs.Epoch })
	lab.start(gs.MasterID)
	lab.waitState(ctx, "three in sync again", allInSync)
	time.Sleep(time.Second)
	v := load.finish()
	t.Logf("killed controller %d (leader) and master %d (epoch %d): controller %d leads; broker %d master of epoch %d; first write acknowledged %v after the kills; duplicated %v, out of order %v",
		leader+1, gs.MasterID, gs.Epoch, next+1, ns.MasterID, ns.Epoch, took.Round(10*time.Millisecond), v.Duplicated, v.OutOfOrder)
}

// A broker with an empty data directory joins a group whose log spans
// several segments: it copies the whole log, enters the in-sync set, and
// as master after the old one's kill -9 serves every message.
func TestNewBrokerCopiesWholeLog(t *testing.T) {
	lab := newGroupLab(t, "newcomer", "--segment-size", fmt.Sprint(256<<10), "--max-message-size", fmt.Sprint(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab.start(0)
	lab.waitState(ctx, "broker 0 master", func(g controller.GroupState) bool { return g.MasterID == 0 })
	load := startLoad(ctx, t, lab, "Newcomer")
	time.Sleep(3 * time.Second)
	load.stop()
	load.senders.Wait()

	joined := time.Now()
	lab.start(1)
	lab.waitState(ctx, "the new broker in sync", func(g controller.GroupState) bool { return slices.Contains(g.InSync, 1) })
	inSync := time.Since(joined)
	var end int64
	gs := lab.waitState(ctx, "the new broker at the master's end", func(g controller.GroupState) bool {
		ends := map[int64]int64{}
		for _, b := range g.Brokers {
			ends[b.ID] = b.LogEnd
		}
		end = ends[0]
		return end > 0 && ends[1] == end
	})
	if end < 2*256<<10 {
		t.Errorf("the log ends at %d: fewer than two segments to copy", end)
	}

	lab.kill9(0)
	ns := lab.waitState(ctx, "the new broker master", func(g controller.GroupState) bool { return g.MasterID == 1 && g.Epoch > gs.Epoch })
	// A consumer group of its own, from the first message, on the copy.
	led := newLedger() // what the load acknowledged, what this group reads
	load.led.mu.Lock()
	led.acked = maps.Clone(load.led.acked)
	load.led.mu.Unlock()
	led.consumeFromFirst(ctx, t, lab.nss, "newcomer-check", "Newcomer")
	v := checkLedger(t, led)
	t.Logf("broker 1 (empty) joined a log of %d bytes: in sync %v after its start; master of epoch %d after broker 0's kill -9, it served %d of %d acknowledged messages; duplicated %v, out of order %v",
		end, inSync.Round(10*time.Millisecond), ns.Epoch, v.Received, v.Acked, v.Duplicated, v.OutOfOrder)
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// regexpFind is re's first group in s, "" when it does not match.
func regexpFind(s, re string) string {
	if m := regexp.MustCompile(re).FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "no"
	}
	return s
}
