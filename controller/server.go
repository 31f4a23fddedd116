// Package controller elects the master of each broker group. Three or five
// controllers form a Raft group (hashicorp/raft, its log and stable store
// in BoltDB); the replicated state is, per group, the master, the epoch,
// the in-sync set and the known brokers. Brokers heartbeat the leader
// every second over the RocketMQ remoting protocol; the leader keeps the
// heartbeats in memory (they are not decisions) and its janitor elects a
// new master for a group whose master has gone silent for
// controller.master-timeout. See docs/replication.md, "Controller".
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/controller/controllerconf"
	"github.com/ferrymq/ferry/internal/lograte"
	"github.com/ferrymq/ferry/remoting"
)

// KeyPurpose is the HKDF info of the controller's key: a request signed
// for the NameServers does not verify here, nor the other way round.
const KeyPurpose = "ferry controller v1"

const (
	// applyTimeout bounds the wait for a command to commit.
	applyTimeout = 5 * time.Second
	// janitorEvery is how often the leader looks for silent masters.
	janitorEvery = 200 * time.Millisecond
	// snapshotsRetained is how many snapshots raft keeps in snapshots/.
	snapshotsRetained = 2
)

// Server is one controller: a Raft node and the RPC listener brokers send
// their heartbeats to.
type Server struct {
	cfg    controllerconf.Config
	peers  []controllerconf.Peer
	dir    string
	logger *slog.Logger

	gate clusterauth.Gate // its Verifier is nil without a cluster secret: loopback peers only

	fsm   *fsm
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
	rpc   *remoting.Server
	addr  string // the RPC address other controllers hand brokers
	bound string // the RPC listener's address

	mu          sync.Mutex
	leading     bool
	leaderSince time.Time
	seen        map[string]map[int64]liveness // group → broker id → its latest heartbeat to this leader
	stats       stats
	lastWarn    map[string]time.Time // group → when "no candidate" was last logged

	refusalLog [len(refuseReasons)]lograte.Limiter // one line a reason every 10 s

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// liveness is a broker's latest heartbeat, in the leader's memory.
type liveness struct {
	at     time.Time
	logEnd int64
}

// NewServer makes a controller; Start runs it. cfg.Dir must be set (the
// command makes it <data-dir>/controller). secret is the cluster secret:
// with one, every request must be signed with it (package clusterauth,
// purpose KeyPurpose); nil admits unsigned requests from loopback peers
// only.
func NewServer(cfg controllerconf.Config, secret []byte, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	peers, err := cfg.CheckServer()
	if err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("controller.dir: must be set")
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, peers: peers, dir: cfg.Dir, logger: logger, fsm: newFSM(),
		lastWarn: map[string]time.Time{}, stop: make(chan struct{})}
	s.gate = clusterauth.Gate{Role: "controller", Sender: "sender",
		NoSecret: "this controller has no cluster secret and serves only loopback peers; %s is not " +
			"(set the same cluster-secret or cluster-secret-file on every controller and broker)"}
	for i := range s.refusalLog {
		s.refusalLog[i].Every = 10 * time.Second
	}
	if secret != nil {
		k, err := clusterauth.NewKeyFor(secret, KeyPurpose)
		if err != nil {
			return nil, err
		}
		s.gate.Verifier = clusterauth.NewVerifier(k)
	}
	s.rpc = remoting.NewServer(remoting.HandlerFunc(s.serve), remoting.ServerOptions{
		Limits:    remoting.Limits{MaxFrame: MaxFrame, MaxConns: 4096, MaxInFlight: 64},
		KeyPrefix: "controller.", Logger: logger})
	return s, nil
}

// Start binds the RPC listener (controller.addr) and the Raft transport
// (controller.raft-addr, else the node's address in controller.raft-peers),
// then starts Raft: see StartListeners.
func (s *Server) Start(ctx context.Context) error {
	rpcLn, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("controller: cannot listen on %s (change it with --controller-addr, controller.addr): %w", s.cfg.Addr, err)
	}
	raftAddr := s.cfg.RaftAddr
	if raftAddr == "" {
		raftAddr = s.cfg.Self(s.peers).Addr
	}
	raftLn, err := net.Listen("tcp", raftAddr)
	if err != nil {
		rpcLn.Close()
		return fmt.Errorf("controller: cannot listen on %s for Raft (change it with --raft-addr, controller.raft-addr, or the node's entry in --raft-peers): %w", raftAddr, err)
	}
	return s.StartListeners(ctx, raftLn, rpcLn)
}

// StartListeners starts the controller on listeners bound by the caller
// (one that picked port 0 for them, then told the peers): it opens
// <dir>/raft.db and <dir>/snapshots/, bootstraps the Raft group with
// controller.raft-peers when the node has no Raft state yet (every node
// does so with the same list, so it does not matter which starts first;
// a node with state ignores the list), and serves rpcLn. It takes the
// listeners over: they are closed by Close, or at once on an error.
func (s *Server) StartListeners(ctx context.Context, raftLn, rpcLn net.Listener) (err error) {
	defer func() {
		if err != nil {
			raftLn.Close()
			rpcLn.Close()
			s.closeRaft()
		}
	}()
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	hlog := newHCLogger(s.logger)
	dbPath := filepath.Join(s.dir, "raft.db")
	s.store, err = raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("controller: %s is in use by another process (one controller per directory; set controller.dir)", dbPath)
		}
		return fmt.Errorf("controller: open %s: %w", dbPath, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.dir, snapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("controller: snapshots in %s: %w", s.dir, err)
	}
	self := s.cfg.Self(s.peers)
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{Listener: raftLn, advertise: tcpAddr(self.Addr)}, MaxPool: 3, Timeout: 2 * time.Second, Logger: hlog})

	rc := s.raftConfig(hlog)
	existing, err := raft.HasExistingState(s.store, s.store, snaps)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if !existing {
		var conf raft.Configuration
		for _, p := range s.peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, s.store, s.store, snaps, s.trans, conf); err != nil {
			return fmt.Errorf("controller: bootstrap: %w", err)
		}
		s.logger.Info("controller: bootstrapped a new Raft group", "node", self.ID, "peers", s.cfg.RaftPeers, "dir", s.dir)
	}
	s.raft, err = raft.NewRaft(rc, s.fsm, s.store, s.store, snaps, s.trans)
	if err != nil {
		return fmt.Errorf("controller: raft: %w", err)
	}
	s.addr = advertised(rpcLn.Addr(), self.Addr)
	s.bound = rpcLn.Addr().String()
	s.logger.Info("controller listening", "addr", rpcLn.Addr().String(), "advertised", s.addr, "raft_addr", raftLn.Addr().String(),
		"node", self.ID, "dir", s.dir, "existing_state", existing, "cluster_secret", s.gate.Verifier != nil)
	if s.gate.Verifier == nil {
		s.logger.Warn("controller: no cluster secret: brokers may reach it only from loopback (this host); " +
			"set cluster-secret-file or FERRY_CLUSTER_SECRET, the same on every controller and broker")
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.rpc.Serve(rpcLn)
	}()
	go s.leaderLoop()
	return nil
}

// raftConfig is Raft's configuration: controller.raft-timeout as both the
// heartbeat and the election timeout, so that a follower that hears
// nothing for 1 to 2 of it campaigns (500 ms: a lost leader is replaced
// in about 1 to 1.5 s on a LAN, well inside a master's 3 s lease).
func (s *Server) raftConfig(hlog hclogLogger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.HeartbeatTimeout = s.cfg.RaftTimeout
	rc.ElectionTimeout = s.cfg.RaftTimeout
	rc.LeaderLeaseTimeout = s.cfg.RaftTimeout
	rc.Logger = hlog
	rc.LogLevel = "INFO"
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 1024
	return rc
}

// advertised is the RPC address the other controllers give brokers: the
// listener's, with the host of the node's Raft peer address when the
// listener's host is unspecified (":9878").
func advertised(ln net.Addr, raftPeer string) string {
	host, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return ln.String()
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return ln.String()
	}
	peerHost, _, err := net.SplitHostPort(raftPeer)
	if err != nil {
		return ln.String()
	}
	return net.JoinHostPort(peerHost, port)
}

// Addr is the bound RPC address ("" before Start).
func (s *Server) Addr() string { return s.bound }

// AdvertisedAddr is the RPC address given to brokers as the leader's.
func (s *Server) AdvertisedAddr() string { return s.addr }

// IsLeader reports whether this controller is the Raft leader and has
// taken over (its state is current).
func (s *Server) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

// Leader is the Raft leader's id as this node knows it ("" when none).
func (s *Server) Leader() string {
	if s.raft == nil {
		return ""
	}
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// Ready is a readiness check: nil once the Raft group has a leader.
func (s *Server) Ready() error {
	if s.Leader() == "" {
		return errors.New("controller: no Raft leader known (fewer than a majority of controller.raft-peers reachable?)")
	}
	return nil
}

// Close stops serving and shuts Raft down (a leader steps down without
// handing over; the others elect within a Raft timeout or two).
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		err = s.rpc.Close()
		s.wg.Wait()
		if e := s.closeRaft(); err == nil {
			err = e
		}
	})
	return err
}

func (s *Server) closeRaft() error {
	var err error
	if s.raft != nil {
		err = s.raft.Shutdown().Error()
		s.raft = nil
	}
	if s.trans != nil {
		s.trans.Close()
		s.trans = nil
	}
	if s.store != nil {
		if e := s.store.Close(); err == nil {
			err = e
		}
		s.store = nil
	}
	return err
}

// leaderLoop follows this node's leadership and runs the janitor while it
// leads.
func (s *Server) leaderLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(janitorEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.raft.LeaderCh():
		case <-tick.C:
		}
		isLeader := s.raft.State() == raft.Leader
		s.mu.Lock()
		was := s.leading
		s.mu.Unlock()
		switch {
		case isLeader && !was:
			s.takeOver()
		case !isLeader && was:
			s.mu.Lock()
			s.leading, s.seen = false, nil
			s.mu.Unlock()
			s.logger.Info("controller: no longer the leader", "node", s.cfg.NodeID, "leader", s.Leader())
		case isLeader:
			s.janitor(time.Now())
		}
	}
}

// takeOver makes this node the acting leader: once every entry of earlier
// terms is applied (Barrier), it records its RPC address for the followers
// to hand out, and starts the brokers' clocks afresh. The heartbeats were
// in the old leader's memory: every broker, the masters included, gets a
// whole master-timeout from now before the janitor may judge it silent.
func (s *Server) takeOver() {
	if err := s.raft.Barrier(applyTimeout).Error(); err != nil {
		s.logger.Warn("controller: leader, but not caught up yet", "err", err)
		return
	}
	if err := s.apply(command{Op: opNode, Node: s.cfg.NodeID, Addr: s.addr}); err != nil {
		s.logger.Warn("controller: leader, but cannot record its address", "err", err)
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.leading, s.leaderSince, s.seen = true, now, map[string]map[int64]liveness{}
	s.stats.leaderChanges++
	s.mu.Unlock()
	s.logger.Info("controller: leading", "node", s.cfg.NodeID, "addr", s.addr, "master_timeout", s.cfg.MasterTimeout)
}

// apply replicates c and returns the FSM's answer.
func (s *Server) apply(c command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f := s.raft.Apply(b, applyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return errNotLeader
		}
		return fmt.Errorf("controller: replicate %s: %w", c.Op, err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	return nil
}

var errNotLeader = errors.New("controller: not the leader")

// janitor elects a master for every group whose master has been silent for
// master-timeout: the alive member of the in-sync set with the largest log
// end (the smallest id on a tie), or, with controller.unclean-election and
// no such member, any alive member.
func (s *Server) janitor(now time.Time) {
	type decision struct {
		group         string
		epoch         int64
		old, next     int64
		unclean       bool
		noCandidateOf []int64
	}
	var todo []decision
	s.mu.Lock()
	if !s.leading {
		s.mu.Unlock()
		return
	}
	s.fsm.read(func(st *state) {
		for _, name := range st.groupNames() {
			g := st.Groups[name]
			if g.MasterID >= 0 && s.aliveLocked(g.Name, g.MasterID, now) {
				continue
			}
			d := decision{group: g.Name, epoch: g.Epoch, old: g.MasterID, next: s.pickLocked(g, g.InSync, now)}
			if d.next < 0 && s.cfg.UncleanElection {
				ids := make([]int64, 0, len(g.Brokers))
				for id := range g.Brokers {
					ids = append(ids, id)
				}
				if d.next = s.pickLocked(g, ids, now); d.next >= 0 {
					d.unclean = true
				}
			}
			if d.next < 0 {
				d.noCandidateOf = slices.Clone(g.InSync)
			}
			todo = append(todo, d)
		}
	})
	s.stats.masterless = 0
	for _, d := range todo {
		if d.next < 0 {
			s.stats.masterless++
		}
	}
	s.mu.Unlock()

	for _, d := range todo {
		if d.next < 0 {
			s.warnNoCandidate(d.group, d.old, d.noCandidateOf, now)
			continue
		}
		err := s.apply(command{Op: opElect, Group: d.group, Epoch: d.epoch, MasterID: d.next})
		if err != nil {
			s.logger.Warn("controller: election not applied", "group", d.group, "candidate", d.next, "err", err)
			continue
		}
		s.mu.Lock()
		if d.unclean {
			s.stats.electionsUnclean++
		} else {
			s.stats.elections++
		}
		s.mu.Unlock()
		lvl := slog.LevelInfo
		if d.unclean {
			lvl = slog.LevelWarn
		}
		s.logger.Log(context.Background(), lvl, "controller: elected a master", "group", d.group, "master", d.next,
			"previous", d.old, "epoch", d.epoch+1, "unclean", d.unclean, "silent_for_at_least", s.cfg.MasterTimeout)
	}
}

// warnNoCandidate logs, at most every master-timeout a group, that a
// group's master is silent and no broker may replace it.
func (s *Server) warnNoCandidate(group string, old int64, inSync []int64, now time.Time) {
	s.mu.Lock()
	last := s.lastWarn[group]
	if now.Sub(last) < s.cfg.MasterTimeout {
		s.mu.Unlock()
		return
	}
	s.lastWarn[group] = now
	s.mu.Unlock()
	hint := "a member of the in-sync set must come back"
	if !s.cfg.UncleanElection {
		hint += " (controller.unclean-election would let any alive broker in, losing what only the in-sync set had)"
	}
	s.logger.Warn("controller: group without a master: no alive candidate", "group", group, "silent_master", old,
		"in_sync", fmt.Sprint(inSync), "hint", hint)
}

// aliveLocked reports whether broker id of group heartbeated this leader
// within master-timeout; a broker not heard from since the leader took
// over counts from then. s.mu is held.
func (s *Server) aliveLocked(group string, id int64, now time.Time) bool {
	last := s.leaderSince
	if l, ok := s.seen[group][id]; ok && l.at.After(last) {
		last = l.at
	}
	return now.Sub(last) < s.cfg.MasterTimeout
}

// pickLocked is the member of ids that heartbeated within master-timeout
// (really: a broker not heard from since the leader took over is no
// candidate) with the largest log end, the smallest id on a tie; -1 when
// none. s.mu is held.
func (s *Server) pickLocked(g *group, ids []int64, now time.Time) int64 {
	best, bestEnd := int64(-1), int64(-1)
	for _, id := range ids {
		if id == g.MasterID || g.Brokers[id] == nil {
			continue
		}
		l, ok := s.seen[g.Name][id]
		if !ok || now.Sub(l.at) >= s.cfg.MasterTimeout {
			continue
		}
		if l.logEnd > bestEnd || l.logEnd == bestEnd && id < best {
			best, bestEnd = id, l.logEnd
		}
	}
	return best
}

// groupState is g as seen from this leader; s.mu is held.
func (s *Server) groupStateLocked(g *group, now time.Time) GroupState {
	gs := GroupState{Group: g.Name, Cluster: g.Cluster, Epoch: g.Epoch, MasterID: g.MasterID, InSync: slices.Clone(g.InSync)}
	ids := make([]int64, 0, len(g.Brokers))
	for id := range g.Brokers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		m := g.Brokers[id]
		bs := BrokerState{ID: id, ReplicationAddr: m.ReplicationAddr, NativeAddr: m.NativeAddr}
		if l, ok := s.seen[g.Name][id]; ok {
			bs.LogEnd, bs.LastSeen, bs.Alive = l.logEnd, l.at, now.Sub(l.at) < s.cfg.MasterTimeout
		}
		if id == g.MasterID {
			gs.MasterAddr, gs.MasterNativeAddr = m.ReplicationAddr, m.NativeAddr
		}
		gs.Brokers = append(gs.Brokers, bs)
	}
	return gs
}

// state answers with group's state, or false when there is no such group.
func (s *Server) state(name string) (GroupState, bool) {
	now := time.Now()
	var gs GroupState
	var ok bool
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fsm.read(func(st *state) {
		if g := st.Groups[name]; g != nil {
			gs, ok = s.groupStateLocked(g, now), true
		}
	})
	return gs, ok
}

// heartbeat registers the broker when the replicated state does not have
// it as it says it is, and records the heartbeat.
func (s *Server) heartbeat(hb Heartbeat) (GroupState, error) {
	var known bool
	s.fsm.read(func(st *state) {
		if g := st.Groups[hb.Group]; g != nil && g.Cluster == hb.Cluster {
			m := g.Brokers[hb.ID]
			known = m != nil && m.ReplicationAddr == hb.ReplicationAddr && m.NativeAddr == hb.NativeAddr
		}
	})
	if !known {
		err := s.apply(command{Op: opRegister, Group: hb.Group, Cluster: hb.Cluster, ID: hb.ID,
			ReplicationAddr: hb.ReplicationAddr, NativeAddr: hb.NativeAddr})
		if err != nil {
			return GroupState{}, err
		}
		s.logger.Info("controller: broker registered", "cluster", hb.Cluster, "group", hb.Group, "id", hb.ID,
			"replication_addr", hb.ReplicationAddr, "native_addr", hb.NativeAddr)
	}
	s.mu.Lock()
	if !s.leading {
		s.mu.Unlock()
		return GroupState{}, errNotLeader
	}
	byID := s.seen[hb.Group]
	if byID == nil {
		byID = map[int64]liveness{}
		s.seen[hb.Group] = byID
	}
	byID[hb.ID] = liveness{at: time.Now(), logEnd: hb.LogEnd}
	s.mu.Unlock()
	gs, ok := s.state(hb.Group)
	if !ok {
		return GroupState{}, invalid("controller: no broker group %s", hb.Group)
	}
	return gs, nil
}

// alterInSync applies a master's new in-sync set.
func (s *Server) alterInSync(r alterRequest) (GroupState, error) {
	err := s.apply(command{Op: opAlter, Group: r.Group, MasterID: r.MasterID, Epoch: r.Epoch, InSync: r.InSync})
	if err != nil {
		return GroupState{}, err
	}
	gs, _ := s.state(r.Group)
	s.logger.Info("controller: in-sync set changed", "group", r.Group, "master", r.MasterID, "epoch", r.Epoch, "in_sync", fmt.Sprint(gs.InSync))
	return gs, nil
}

// groups is every group's state, sorted by name.
func (s *Server) groups() []GroupState {
	now := time.Now()
	var out []GroupState
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fsm.read(func(st *state) {
		for _, name := range st.groupNames() {
			out = append(out, s.groupStateLocked(st.Groups[name], now))
		}
	})
	return out
}

// leaderAddr is the leader's RPC address as the replicated state has it.
func (s *Server) leaderAddr() string {
	id := s.Leader()
	if id == "" {
		return ""
	}
	var addr string
	s.fsm.read(func(st *state) { addr = st.Nodes[id] })
	return addr
}

// tcpAddr is a net.Addr that is exactly the string it was given, so that
// the Raft transport advertises the peer address as configured (a host
// name stays a host name).
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// streamLayer is Raft's transport over a listener the server was given.
type streamLayer struct {
	net.Listener
	advertise net.Addr
}

func (l *streamLayer) Addr() net.Addr { return l.advertise }

func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}
