package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/controller"
)

// failoverRounds is how many masters TestFailoverKill9 kills: a short form
// in every run, ten with the soak build tag (soak_test.go).
var failoverRounds = 2

const failoverSecret = "replication-test-secret-0123456789"

// groupLab is a replicated broker group of real processes on loopback:
// three NameServers that are also the controllers (ferry namesrv
// --controller) and brokers of one group.
type groupLab struct {
	t       *testing.T
	bin     string
	env     []string
	nss     []string // NameServer addresses
	ctls    []string // controller addresses
	ctl     *controller.Client
	group   string
	brokers map[int64]*labBroker
	args    []string     // extra flags of every broker
	ctlProc []*ferryProc // the NameServer-controllers, node id i+1 at i
	// net, when set, runs every process in a node of its own
	// (partition_test.go): controller i+1 in node i, broker id in node 3+id.
	net *netLab
}

type labBroker struct {
	id   int64
	dir  string
	proc *ferryProc
}

// newGroupLab starts the three NameServer-controllers.
func newGroupLab(t *testing.T, group string, brokerArgs ...string) *groupLab {
	t.Helper()
	return newGroupLabCtl(t, group, nil, brokerArgs...)
}

// newGroupLabCtl is newGroupLab with ctlArgs added to every controller's
// flags.
func newGroupLabCtl(t *testing.T, group string, ctlArgs []string, brokerArgs ...string) *groupLab {
	t.Helper()
	l := &groupLab{t: t, bin: buildFerry(t), env: []string{"FERRY_CLUSTER_SECRET=" + failoverSecret},
		group: group, brokers: map[int64]*labBroker{}, args: brokerArgs}
	raftPeers := freeRaftPeers(t, 3)
	nsRE := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`)
	ctlRE := regexp.MustCompile(`msg="controller listening".* addr=(\S+)`)
	for i := 1; i <= 3; i++ {
		args := append([]string{"namesrv", "--controller", "--node-id", fmt.Sprint(i), "--raft-peers", raftPeers,
			"--namesrv-addr", "127.0.0.1:0", "--controller-addr", "127.0.0.1:0", "--http-addr", "off",
			"--data-dir", filepath.Join(t.TempDir(), "ctl")}, ctlArgs...)
		p := startFerryEnv(t, l.bin, l.env, args...)
		if !p.waitLog(`msg="ferry ready"`, 30*time.Second) {
			t.Fatalf("namesrv/controller %d did not start:\n%s", i, p.log())
		}
		l.ctlProc = append(l.ctlProc, p)
		l.nss = append(l.nss, nsRE.FindStringSubmatch(p.log())[1])
		l.ctls = append(l.ctls, ctlRE.FindStringSubmatch(p.log())[1])
	}
	l.ctl = controller.NewClient(l.ctls, []byte(failoverSecret), nil)
	t.Cleanup(func() { l.ctl.Close() })
	return l
}

// start starts (or restarts, on its data directory) broker id.
func (l *groupLab) start(id int64) *labBroker {
	l.t.Helper()
	b := l.brokers[id]
	if b == nil {
		b = &labBroker{id: id, dir: filepath.Join(l.t.TempDir(), fmt.Sprint("broker-", id))}
		l.brokers[id] = b
	}
	native, repl := "127.0.0.1:0", "127.0.0.1:0"
	if l.net != nil {
		host := l.net.Addr(brokerNode(id))
		native, repl = host+":10911", host+":10912"
	}
	args := append([]string{"broker", "--namesrv", strings.Join(l.nss, ","), "--controllers", strings.Join(l.ctls, ","),
		"--broker-name", l.group, "--broker-id", fmt.Sprint(id), "--data-dir", b.dir,
		"--native-addr", native, "--replication-addr", repl,
		"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off"}, l.args...)
	b.proc = l.run(brokerNode(id), args...)
	if !b.proc.waitLog(`msg="ferry ready"`, 30*time.Second) {
		l.t.Fatalf("broker %d did not start:\n%s", id, b.proc.log())
	}
	return b
}

// state is the group as the controllers see it.
func (l *groupLab) state(ctx context.Context) (controller.GroupState, bool) {
	gs, err := l.ctl.Groups(ctx)
	if err != nil {
		return controller.GroupState{}, false
	}
	for _, g := range gs {
		if g.Group == l.group {
			return g, true
		}
	}
	return controller.GroupState{}, false
}

// waitState waits until the group's state satisfies ok.
func (l *groupLab) waitState(ctx context.Context, what string, ok func(controller.GroupState) bool) controller.GroupState {
	l.t.Helper()
	var last controller.GroupState
	for {
		if gs, found := l.state(ctx); found {
			last = gs
			if ok(gs) {
				return gs
			}
		}
		select {
		case <-ctx.Done():
			l.t.Fatalf("%s: not within the test's bound; the group is %+v", what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill9 kills broker id's process with SIGKILL.
func (l *groupLab) kill9(id int64) {
	l.t.Helper()
	b := l.brokers[id]
	if err := b.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		l.t.Fatal(err)
	}
	b.proc.wait(l.t, 10*time.Second)
}

// A sync group of three survives kill -9 of its master under load, round
// after round: a new master takes writes within 10 s, the producers and
// the consumer group carry on without a restart, and every acknowledged
// message is consumed once the group is whole again.
func TestFailoverKill9(t *testing.T) {
	lab := newGroupLab(t, "failover", "--replication-mode", "sync", "--min-insync-replicas", "2")
	for id := range int64(3) {
		lab.start(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+40*failoverRounds)*time.Second)
	defer cancel()
	allInSync := func(gs controller.GroupState) bool { return len(gs.InSync) == 3 }
	lab.waitState(ctx, "a master and three in sync", allInSync)

	admin, err := client.NewAdmin(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const topic = "Failover"
	createTopicOnceRegistered(ctx, t, admin, lab.nss[0], topic, 4)

	led := newLedger()
	led.consumeFromFirst(ctx, t, lab.nss, "failover-readers", topic)
	prod, err := client.NewProducer(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	senders := led.produce(loadCtx, t, prod, topic, 4)

	var times []time.Duration
	for round := range failoverRounds {
		time.Sleep(2 * time.Second) // load on the master
		gs := lab.waitState(ctx, "three in sync", allInSync)
		old := gs.MasterID
		lab.kill9(old)
		led.markFailover()
		took, err := led.failoverTime(20 * time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", round+1, err)
		}
		ns := lab.waitState(ctx, "a new master", func(g controller.GroupState) bool { return g.MasterID != old && g.Epoch > gs.Epoch })
		times = append(times, took)
		t.Logf("round %d: killed master %d (epoch %d); broker %d master of epoch %d; first acknowledged write %v after the kill",
			round+1, old, gs.Epoch, ns.MasterID, ns.Epoch, took.Round(10*time.Millisecond))
		lab.start(old) // it comes back as a replica, truncates what it alone had, and catches up
	}
	lab.waitState(ctx, "three in sync after the last round", allInSync)
	time.Sleep(time.Second)
	stopLoad()
	senders.Wait()
	v := led.waitAll(60 * time.Second)
	t.Logf("failover times: %v", times)
	t.Logf("checker: %v", v)
	if len(v.Lost) > 0 {
		t.Fatalf("acknowledged messages lost: %v", v)
	}
	if v.Acked == 0 {
		t.Fatal("no message was acknowledged")
	}
	// The aim is a new master within 10 s; a figure, not a pass/fail (a
	// starved machine delays any timer).
	t.Logf("slowest failover %v (aim: under 10 s)", slices.Max(times))
}

// A broker the controllers make master that cannot serve (a port of its
// serving half taken) stops, naming the port, rather than holding the
// group's mastership without serving it.
func TestMasterThatCannotServeStops(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	lab := newGroupLab(t, "unservable", "--amqp-addr", taken.Addr().String())
	b := lab.start(0)
	if code := b.proc.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("the broker exited 0:\n%s", b.proc.log())
	}
	if log := b.proc.log(); !strings.Contains(log, "cannot serve as master") || !strings.Contains(log, taken.Addr().String()) {
		t.Fatalf("the broker did not say why it stopped:\n%s", log)
	}
}
