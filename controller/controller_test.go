package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/controller/controllerconf"
	"github.com/ferrymq/ferry/remoting"
)

// testNode is one controller of a test cluster, on loopback listeners bound
// before the peers list is made.
type testNode struct {
	cfg      controllerconf.Config
	rpcAddr  string
	raftAddr string
	srv      *Server
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts n controllers on loopback (port 0) and waits for a
// leader.
func startCluster(t *testing.T, n int, secret []byte, edit func(*controllerconf.Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	raftLns := make([]net.Listener, n)
	rpcLns := make([]net.Listener, n)
	var peers []string
	for i := range nodes {
		var err error
		if raftLns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if rpcLns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, fmt.Sprintf("c%d=%s", i+1, raftLns[i].Addr()))
	}
	for i := range nodes {
		cfg := controllerconf.Default()
		cfg.RaftPeers = strings.Join(peers, ",")
		cfg.NodeID = fmt.Sprintf("c%d", i+1)
		cfg.Dir = t.TempDir()
		cfg.MasterTimeout = time.Second
		if edit != nil {
			edit(&cfg)
		}
		nodes[i] = &testNode{cfg: cfg, rpcAddr: rpcLns[i].Addr().String(), raftAddr: raftLns[i].Addr().String()}
	}
	for i, nd := range nodes {
		nd.start(t, secret, raftLns[i], rpcLns[i])
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if nd.srv != nil {
				nd.srv.Close()
			}
		}
	})
	waitLeader(t, nodes, 10*time.Second)
	return nodes
}

func (nd *testNode) start(t *testing.T, secret []byte, raftLn, rpcLn net.Listener) {
	t.Helper()
	var err error
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", nd.raftAddr); err != nil {
			t.Fatal(err)
		}
		if rpcLn, err = net.Listen("tcp", nd.rpcAddr); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := NewServer(nd.cfg, secret, testLogger(t).With("node", nd.cfg.NodeID))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.StartListeners(context.Background(), raftLn, rpcLn); err != nil {
		t.Fatal(err)
	}
	nd.srv = srv
}

func (nd *testNode) stop(t *testing.T) {
	t.Helper()
	if err := nd.srv.Close(); err != nil {
		t.Errorf("close %s: %v", nd.cfg.NodeID, err)
	}
	nd.srv = nil
}

// waitFor polls cond every 20 ms until it holds, failing the test with
// what when it does not within d.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLeader waits for one of nodes to act as leader and returns it.
func waitLeader(t *testing.T, nodes []*testNode, within time.Duration) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, within, "a controller leads", func() bool {
		for _, nd := range nodes {
			if nd.srv != nil && nd.srv.IsLeader() {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

func rpcAddrs(nodes []*testNode) []string {
	var out []string
	for _, nd := range nodes {
		out = append(out, nd.rpcAddr)
	}
	return out
}

// beat is a broker's heartbeat loop: every interval until stopped.
type beat struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	last GroupState
	err  error
}

func startBeating(c *Client, hb Heartbeat, every time.Duration) *beat {
	b := &beat{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			gs, err := c.Heartbeat(ctx, hb)
			cancel()
			b.mu.Lock()
			b.last, b.err = gs, err
			b.mu.Unlock()
			select {
			case <-b.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return b
}

func (b *beat) Stop() { close(b.stop); <-b.done }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitGroup polls Groups until cond holds for group name.
func waitGroup(t *testing.T, c *Client, name string, within time.Duration, cond func(GroupState) bool) GroupState {
	t.Helper()
	deadline := time.Now().Add(within)
	var last GroupState
	for time.Now().Before(deadline) {
		gs, err := c.Groups(ctxT(t))
		if err == nil {
			for _, g := range gs {
				if g.Group == name {
					last = g
					if cond(g) {
						return g
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("group %s: condition not met within %v; last state %+v", name, within, last)
	return last
}

func TestControllerElectsFromInSyncSet(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	c := NewClient(rpcAddrs(nodes), nil, testLogger(t))
	defer c.Close()
	ctx := ctxT(t)

	hb := func(id, end int64) Heartbeat {
		return Heartbeat{Cluster: "C", Group: "g", ID: id, ReplicationAddr: fmt.Sprintf("127.0.0.1:%d", 20000+id),
			NativeAddr: fmt.Sprintf("127.0.0.1:%d", 21000+id), LogEnd: end}
	}
	gs, err := c.Heartbeat(ctx, hb(0, 100))
	if err != nil {
		t.Fatal(err)
	}
	if gs.MasterID != 0 || gs.Epoch != 1 || !slices.Equal(gs.InSync, []int64{0}) || gs.MasterAddr != "127.0.0.1:20000" {
		t.Fatalf("first broker: state %+v, want master 0 of epoch 1, in-sync [0]", gs)
	}
	for _, id := range []int64{1, 2} {
		if gs, err = c.Heartbeat(ctx, hb(id, 90)); err != nil {
			t.Fatal(err)
		}
		if gs.MasterID != 0 || gs.Epoch != 1 {
			t.Fatalf("broker %d joined: state %+v, want master 0 of epoch 1", id, gs)
		}
	}
	// Only the master of the current epoch changes the in-sync set.
	if _, err := c.AlterInSync(ctx, "g", 1, 1, []int64{1}); !errors.Is(err, ErrFencedEpoch) {
		t.Fatalf("alter by a replica: %v, want ErrFencedEpoch", err)
	}
	if _, err := c.AlterInSync(ctx, "g", 0, 0, []int64{1}); !errors.Is(err, ErrFencedEpoch) {
		t.Fatalf("alter with an old epoch: %v, want ErrFencedEpoch", err)
	}
	if _, err := c.AlterInSync(ctx, "g", 0, 1, []int64{7}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("alter naming a stranger: %v, want ErrInvalidRequest", err)
	}
	if gs, err = c.AlterInSync(ctx, "g", 0, 1, []int64{1}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gs.InSync, []int64{0, 1}) {
		t.Fatalf("in-sync set %v, want [0 1]", gs.InSync)
	}

	// The master falls silent; 1 (in sync) and 2 (not, with a longer log)
	// heartbeat on: 1 must be elected, within master-timeout and a bit.
	b1 := startBeating(c, hb(1, 90), 200*time.Millisecond)
	defer b1.Stop()
	b2 := startBeating(c, hb(2, 500), 200*time.Millisecond)
	defer b2.Stop()
	start := time.Now()
	gs = waitGroup(t, c, "g", nodes[0].cfg.MasterTimeout+3*time.Second, func(g GroupState) bool { return g.Epoch == 2 })
	t.Logf("new master elected %v after the last heartbeat of the old one", time.Since(start).Round(10*time.Millisecond))
	if gs.MasterID != 1 || !slices.Equal(gs.InSync, []int64{1}) || gs.MasterAddr != "127.0.0.1:20001" {
		t.Fatalf("after the master fell silent: %+v, want master 1 of epoch 2, in-sync [1]", gs)
	}
	// The deposed master learns it from its next heartbeat.
	if gs, err = c.Heartbeat(ctx, hb(0, 100)); err != nil || gs.MasterID != 1 || gs.Epoch != 2 {
		t.Fatalf("old master's heartbeat: %+v, %v; want master 1 of epoch 2", gs, err)
	}
	if _, err := c.AlterInSync(ctx, "g", 0, 1, []int64{}); !errors.Is(err, ErrFencedEpoch) {
		t.Fatalf("alter by the deposed master: %v, want ErrFencedEpoch", err)
	}
	ld := waitLeader(t, nodes, time.Second)
	if got := testutil.ToFloat64(electionsCounter(ld.srv)); got != 1 {
		t.Errorf("elections on the leader: %v, want 1", got)
	}
}

// electionsCounter is a collector of the clean elections metric alone.
func electionsCounter(s *Server) *collectorFilter {
	return &collectorFilter{s: s, name: `ferry_controller_elections_total`, label: "clean"}
}

func TestControllerUncleanElection(t *testing.T) {
	for _, unclean := range []bool{false, true} {
		t.Run(fmt.Sprintf("unclean=%v", unclean), func(t *testing.T) {
			nodes := startCluster(t, 1, nil, func(c *controllerconf.Config) { c.UncleanElection = unclean })
			c := NewClient(rpcAddrs(nodes), nil, testLogger(t))
			defer c.Close()
			ctx := ctxT(t)
			if _, err := c.Heartbeat(ctx, Heartbeat{Cluster: "C", Group: "g", ID: 0, LogEnd: 10}); err != nil {
				t.Fatal(err)
			}
			// Broker 1 is alive but never joined the in-sync set.
			b := startBeating(c, Heartbeat{Cluster: "C", Group: "g", ID: 1, LogEnd: 5}, 200*time.Millisecond)
			defer b.Stop()
			if !unclean {
				time.Sleep(nodes[0].cfg.MasterTimeout + 1500*time.Millisecond)
				gs := waitGroup(t, c, "g", time.Second, func(GroupState) bool { return true })
				if gs.MasterID != 0 || gs.Epoch != 1 {
					t.Fatalf("unclean off: %+v, want master 0 of epoch 1 still (1 is not in sync)", gs)
				}
				if got := testutil.ToFloat64(&collectorFilter{s: nodes[0].srv, name: "ferry_controller_groups_without_master"}); got != 1 {
					t.Errorf("groups without master: %v, want 1", got)
				}
				return
			}
			gs := waitGroup(t, c, "g", nodes[0].cfg.MasterTimeout+3*time.Second, func(g GroupState) bool { return g.Epoch == 2 })
			if gs.MasterID != 1 {
				t.Fatalf("unclean on: %+v, want master 1", gs)
			}
			if got := testutil.ToFloat64(&collectorFilter{s: nodes[0].srv, name: "ferry_controller_elections_total", label: "unclean"}); got != 1 {
				t.Errorf("unclean elections: %v, want 1", got)
			}
		})
	}
}

func TestControllerLeaderLossKeepsState(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	c := NewClient(rpcAddrs(nodes), nil, testLogger(t))
	defer c.Close()
	ctx := ctxT(t)
	if _, err := c.Heartbeat(ctx, Heartbeat{Cluster: "C", Group: "g", ID: 0, LogEnd: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Heartbeat(ctx, Heartbeat{Cluster: "C", Group: "g", ID: 1, LogEnd: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AlterInSync(ctx, "g", 0, 1, []int64{1}); err != nil {
		t.Fatal(err)
	}
	// Both brokers heartbeat throughout: the new leader must give them a
	// fresh master-timeout rather than depose the master it never heard.
	b0 := startBeating(c, Heartbeat{Cluster: "C", Group: "g", ID: 0, LogEnd: 10}, 200*time.Millisecond)
	defer b0.Stop()
	b1 := startBeating(c, Heartbeat{Cluster: "C", Group: "g", ID: 1, LogEnd: 10}, 200*time.Millisecond)
	defer b1.Stop()

	old := waitLeader(t, nodes, time.Second)
	start := time.Now()
	old.stop(t)
	var rest []*testNode
	for _, nd := range nodes {
		if nd != old {
			rest = append(rest, nd)
		}
	}
	nl := waitLeader(t, rest, 5*time.Second)
	t.Logf("%s leads %v after %s stopped", nl.cfg.NodeID, time.Since(start).Round(10*time.Millisecond), old.cfg.NodeID)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("re-election took %v, want under 3 s", d)
	}
	gs := waitGroup(t, c, "g", 3*time.Second, func(g GroupState) bool { return len(g.Brokers) == 2 && g.Brokers[0].Alive })
	if gs.MasterID != 0 || gs.Epoch != 1 || !slices.Equal(gs.InSync, []int64{0, 1}) {
		t.Fatalf("after the leader stopped: %+v, want master 0 of epoch 1, in-sync [0 1]", gs)
	}
	time.Sleep(nodes[0].cfg.MasterTimeout + 500*time.Millisecond)
	if gs = waitGroup(t, c, "g", time.Second, func(GroupState) bool { return true }); gs.Epoch != 1 {
		t.Fatalf("a heartbeating master was deposed after the leader change: %+v", gs)
	}
}

func TestControllerRestartKeepsState(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	c := NewClient(rpcAddrs(nodes), nil, testLogger(t))
	defer c.Close()
	ctx := ctxT(t)
	for id := int64(0); id < 3; id++ {
		if _, err := c.Heartbeat(ctx, Heartbeat{Cluster: "C", Group: "g", ID: id, ReplicationAddr: "127.0.0.1:1", LogEnd: 10}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := c.AlterInSync(ctx, "g", 0, 1, []int64{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		nd.stop(t)
	}
	c.Close()
	for _, nd := range nodes {
		nd.start(t, nil, nil, nil)
	}
	waitLeader(t, nodes, 10*time.Second)
	gs := waitGroup(t, c, "g", 5*time.Second, func(GroupState) bool { return true })
	if gs.MasterID != 0 || gs.Epoch != 1 || !slices.Equal(gs.InSync, []int64{0, 1, 2}) || len(gs.Brokers) != 3 || gs.MasterAddr != want.MasterAddr {
		t.Fatalf("after restarting every controller: %+v, want %+v", gs, want)
	}
}

func TestControllerAuthorises(t *testing.T) {
	secret := []byte("0123456789abcdef-the-cluster")
	nodes := startCluster(t, 1, secret, nil)
	hb := Heartbeat{Cluster: "C", Group: "g", ID: 0}
	ctx := ctxT(t)
	for _, tc := range []struct {
		name   string
		secret []byte
		reason string
	}{
		{"unsigned", nil, "unsigned"},
		{"other secret", []byte("another-secret-of-the-same-size"), "bad_signature"},
	} {
		c := NewClient(rpcAddrs(nodes), tc.secret, testLogger(t))
		_, err := c.Heartbeat(ctx, hb)
		c.Close()
		if !errors.Is(err, remoting.ErrNoPermission) {
			t.Fatalf("%s: %v, want NO_PERMISSION", tc.name, err)
		}
		if got := testutil.ToFloat64(&collectorFilter{s: nodes[0].srv, name: "ferry_controller_refused_total", label: tc.reason}); got != 1 {
			t.Errorf("%s: refused{reason=%s} = %v, want 1", tc.name, tc.reason, got)
		}
	}
	// A request signed for the NameServers (the same secret, another
	// purpose) is no controller request.
	nsKey, err := clusterauth.NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := remoting.Dial(ctx, nodes[0].rpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	req := remoting.NewRequest(CodeHeartbeat, nil, []byte(`{"cluster":"C","group":"g","id":0}`))
	if err := nsKey.Sign(req, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Invoke(ctx, req)
	if err != nil || resp.Code != remoting.NoPermission {
		t.Fatalf("request signed with the NameServer key: %v, %v; want NO_PERMISSION", resp, err)
	}
	c := NewClient(rpcAddrs(nodes), secret, testLogger(t))
	defer c.Close()
	if _, err := c.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if gs, err := c.Groups(ctx); err != nil || len(gs) != 1 {
		t.Fatalf("groups: %+v, %v", gs, err)
	}
	// A bad request is refused with the reason.
	if _, err := c.Heartbeat(ctx, Heartbeat{Cluster: "C", Group: "bad name", ID: 0}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("bad group name: %v, want ErrInvalidRequest", err)
	}
}

func TestControllerNotLeaderAnswersWithLeader(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	ld := waitLeader(t, nodes, time.Second)
	var follower *testNode
	for _, nd := range nodes {
		if nd != ld {
			follower = nd
		}
	}
	// A client that knows only a follower finds the leader through it.
	waitFor(t, 5*time.Second, fmt.Sprintf("follower %s names leader %s", follower.cfg.NodeID, ld.rpcAddr),
		func() bool { return follower.srv.leaderAddr() == ld.rpcAddr })
	c := NewClient([]string{follower.rpcAddr}, nil, testLogger(t))
	defer c.Close()
	if _, err := c.Heartbeat(ctxT(t), Heartbeat{Cluster: "C", Group: "g", ID: 0}); err != nil {
		t.Fatal(err)
	}
}

func TestControllerReplacedDiskCopiesState(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	c := NewClient(rpcAddrs(nodes), nil, testLogger(t))
	defer c.Close()
	if _, err := c.Heartbeat(ctxT(t), Heartbeat{Cluster: "C", Group: "g", ID: 0}); err != nil {
		t.Fatal(err)
	}
	ld := waitLeader(t, nodes, time.Second)
	var f *testNode
	for _, nd := range nodes {
		if nd != ld {
			f = nd
		}
	}
	f.stop(t)
	f.cfg.Dir = t.TempDir() // a new, empty disk: it bootstraps, then follows the leader
	f.start(t, nil, nil, nil)
	waitFor(t, 5*time.Second, "the replaced controller gets the group", func() bool {
		var n int
		f.srv.fsm.read(func(st *state) { n = len(st.Groups) })
		return n == 1
	})
	if !ld.srv.IsLeader() {
		t.Errorf("the replaced controller's start deposed the leader")
	}
}
