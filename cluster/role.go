package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ferrymq/ferry/controller"
	"github.com/ferrymq/ferry/replication"
	"github.com/ferrymq/ferry/storage"
)

// ErrNotMaster is what a broker that is not its group's master answers a
// write with: the store is fenced with it while the broker is a replica or
// between roles.
var ErrNotMaster = fmt.Errorf("%w: this broker is not its group's master", storage.ErrFenced)

// ErrLeaseExpired is what a master answers a write with once the
// controllers have not confirmed it for replication.lease: it may have been
// deposed on the other side of a partition, so it acknowledges nothing more
// until they confirm it again.
var ErrLeaseExpired = fmt.Errorf("%w: the master's lease ran out: the controllers have not confirmed it (partitioned?)", storage.ErrFenced)

// ErrIsMaster is what a master's store answers a copied chunk with
// (AppendRaw): a log that takes appends of its own takes no copy.
var ErrIsMaster = fmt.Errorf("%w: this broker is its group's master: it copies no other log", storage.ErrFenced)

// Serving is the part of a broker process that serves clients: the core,
// the front-ends, the bridges and the registration with the NameServers.
// Start starts it in mode as the group's broker of epoch; Stop stops it
// and waits. The role manager runs it as ServeMaster while the broker is
// its group's master and as ServeReader while it is a replica.
type Serving interface {
	Start(ctx context.Context, mode ServingMode, epoch int64) error
	Stop(ctx context.Context) error
}

// ServingMode is how the serving half runs.
type ServingMode int

const (
	// ServeMaster: everything, registered as id 0; it takes writes.
	ServeMaster ServingMode = iota
	// ServeReader: a replica's read-only half (RocketMQ's read from
	// slave): a follower core and the native front-end only, registered
	// under the broker's own id (> 0), so that clients read from it when
	// the master is gone. It takes no writes.
	ServeReader
)

func (m ServingMode) String() string {
	if m == ServeReader {
		return "reader"
	}
	return "master"
}

// Controller is what the role manager asks of the controllers
// (*controller.Client).
type Controller interface {
	Heartbeat(ctx context.Context, hb controller.Heartbeat) (controller.GroupState, error)
	AlterInSync(ctx context.Context, group string, masterID, epoch int64, inSync []int64) (controller.GroupState, error)
}

// RoleOptions configure a RoleManager.
type RoleOptions struct {
	// Identity names the group (Name) and this broker in it (ID, as
	// configured: which broker is master is the controllers' decision).
	Identity   Identity
	Store      *storage.Store
	Controller Controller
	// Replication is the group's replication settings.
	Replication replication.Config
	// Listener is the replication listener, bound by the caller; the role
	// serves replicas on it while it is master. Advertise is the address
	// the replicas dial (default: the listener's).
	Listener  net.Listener
	Advertise string
	// NativeAddr, when set, tells the controllers where clients reach the
	// master (for `ferry cluster list`).
	NativeAddr func() string
	Serving    Serving
	// Fatal, when set, is called when the broker cannot serve as the
	// master the controllers made it (its serving half does not start: a
	// port taken, say). It should stop the process: a broker that stays
	// alive would keep heartbeating, and the controllers would never elect
	// a master that can serve.
	Fatal func(error)
	// Heartbeat is the interval of heartbeats to the controllers (500 ms);
	// Lease how long a master acknowledges writes after the send of the
	// last heartbeat the controllers answered (2.5 s; less than the
	// controllers' master timeout, so that a master cut off from them stops
	// before they elect another).
	Heartbeat, Lease time.Duration
	Logger           *slog.Logger
}

// RoleManager is the broker's role manager: it heartbeats to the controllers and
// makes the broker what they decide. As master it writes the epoch's
// record, serves its replicas, asks the controllers to change the in-sync
// set as replicas catch up or fall behind, and runs Serving; as a replica
// it follows the master's log. One goroutine (loop) owns the transitions;
// the lease timer only fences.
type RoleManager struct {
	opts   RoleOptions
	logger *slog.Logger

	// The loop's own; read by Status under mu.
	mu        sync.Mutex
	kind      string // "", "master" or "replica"
	epoch     int64  // the epoch this broker is master of
	group     controller.GroupState
	lastErr   error
	master    *replication.Master
	replica   *replication.Replica
	follows   string
	accepted  chan net.Conn // the replication listener's connections, while master
	lease     *time.Timer
	leaseEnd  time.Time
	fenced    error  // what the store is fenced with, nil when it takes writes
	reading   bool   // the serving half runs as ServeReader
	readerErr string // why the reader half last failed to start
	stats     RoleStats

	stop chan struct{}
	wg   sync.WaitGroup
}

// RoleStats count the role manager's events, for metrics.
type RoleStats struct {
	Promotions, Demotions, LeaseExpiries, HeartbeatErrors int64
}

// RoleStatus is a snapshot of the role, for logs, metrics and status.
type RoleStatus struct {
	Role     string // "master", "replica" or "" (not yet decided)
	Epoch    int64
	Group    controller.GroupState
	Replicas []replication.ReplicaStatus // as master
	Follows  string                      // as replica: the master's replication address
	Fenced   string                      // why the store refuses writes, "" when it takes them
	LastErr  string
	Stats    RoleStats
}

// NewRoleManager makes the role manager. The store is fenced until the
// controllers make the broker master.
func NewRoleManager(opts RoleOptions) *RoleManager {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 500 * time.Millisecond
	}
	if opts.Lease <= 0 {
		opts.Lease = 2500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Advertise == "" && opts.Listener != nil {
		opts.Advertise = Reachable(opts.Listener.Addr().String())
	}
	r := &RoleManager{opts: opts, logger: opts.Logger, stop: make(chan struct{})}
	r.fence(ErrNotMaster)
	return r
}

// Start starts heartbeating and accepting replication connections.
func (r *RoleManager) Start() {
	r.wg.Add(2)
	go r.acceptLoop()
	go r.loop()
}

// Close stops the role: the serving half if it runs, the replication
// master or replica; the store stays fenced.
func (r *RoleManager) Close() error {
	select {
	case <-r.stop:
		return nil
	default:
	}
	close(r.stop)
	if r.opts.Listener != nil {
		r.opts.Listener.Close()
	}
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), roleChangeTimeout)
	defer cancel()
	return r.step(ctx, "", controller.GroupState{})
}

// Status returns the role now.
func (r *RoleManager) Status() RoleStatus {
	r.mu.Lock()
	st := RoleStatus{Role: r.kind, Epoch: r.epoch, Group: r.group, Follows: r.follows, Stats: r.stats}
	if r.fenced != nil {
		st.Fenced = r.fenced.Error()
	}
	if r.lastErr != nil {
		st.LastErr = r.lastErr.Error()
	}
	m := r.master
	r.mu.Unlock()
	if m != nil {
		st.Replicas = m.Replicas()
	}
	return st
}

// ReplicaStatus is the replication's view of the group from this broker:
// its replicas as master, its own copy as replica, nothing as none.
func (r *RoleManager) ReplicaStatus() []replication.ReplicaStatus {
	r.mu.Lock()
	m, rep := r.master, r.replica
	r.mu.Unlock()
	switch {
	case m != nil:
		return m.Replicas()
	case rep != nil:
		return []replication.ReplicaStatus{rep.Status()}
	}
	return nil
}

// Ready is nil once the broker has a role.
func (r *RoleManager) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind == "" {
		if r.lastErr != nil {
			return fmt.Errorf("no role yet: %w", r.lastErr)
		}
		return errors.New("no role yet: waiting for the controllers")
	}
	return nil
}

// acceptLoop hands the replication listener's connections to the master,
// or closes them while the broker is none.
func (r *RoleManager) acceptLoop() {
	defer r.wg.Done()
	if r.opts.Listener == nil {
		return
	}
	for {
		c, err := r.opts.Listener.Accept()
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.logger.Error("replication: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		r.mu.Lock()
		ch := r.accepted
		r.mu.Unlock()
		if ch == nil {
			c.Close() // not master: the replica dials again, and asks the controllers who is
			continue
		}
		select {
		case ch <- c:
		case <-time.After(time.Second):
			c.Close()
		}
	}
}

// loop heartbeats every opts.Heartbeat and acts on the answers. A
// heartbeat that fails is sent again sooner (retryBeat): while the
// controllers elect a leader of their own, a master has its lease to
// reach the new one.
func (r *RoleManager) loop() {
	defer r.wg.Done()
	for {
		wait := r.opts.Heartbeat
		if !r.beat() {
			wait = min(wait, retryBeat)
		}
		select {
		case <-r.stop:
			return
		case <-time.After(wait):
		}
	}
}

// retryBeat is the pause before a failed heartbeat is sent again.
const retryBeat = 200 * time.Millisecond

// roleChangeTimeout bounds one role change: starting or stopping the
// serving half, promoting, following.
const roleChangeTimeout = 30 * time.Second

// beat sends one heartbeat and makes the broker what the answer says; it
// reports whether the controllers answered.
func (r *RoleManager) beat() bool {
	r.mu.Lock()
	epoch, kind := r.epoch, r.kind
	r.mu.Unlock()
	hb := controller.Heartbeat{Cluster: r.opts.Identity.Cluster, Group: r.opts.Identity.Name, ID: r.opts.Identity.ID,
		ReplicationAddr: r.opts.Advertise, Epoch: epoch, LogEnd: r.opts.Store.EndOffset()}
	if r.opts.NativeAddr != nil && kind == "master" {
		hb.NativeAddr = r.opts.NativeAddr()
	}
	if kind != "master" {
		hb.Epoch = r.logEpoch()
	}
	sent := time.Now()
	// Half the lease: a controller that hangs leaves time to ask another.
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Lease/2)
	defer cancel()
	gs, err := r.opts.Controller.Heartbeat(ctx, hb)
	if err != nil {
		r.mu.Lock()
		r.stats.HeartbeatErrors++
		first := r.lastErr == nil
		r.lastErr = err
		r.mu.Unlock()
		if first {
			r.logger.Warn("cluster: controllers unreachable; a master stops acknowledging when its lease runs out", "err", err, "lease", r.opts.Lease)
		}
		return false
	}
	r.mu.Lock()
	if r.lastErr != nil {
		r.logger.Info("cluster: controllers reachable again")
	}
	r.lastErr = nil
	r.group = gs
	r.mu.Unlock()
	want := "replica"
	if gs.MasterID == r.opts.Identity.ID {
		want = "master"
	}
	// A role change gets a bound of its own, not what the heartbeat left of
	// half the lease: stopping the serving half waits for the front-ends'
	// requests in flight, and fx runs no further stop hook once its context
	// is done, which would leave the native listener open and a later
	// promotion of this broker unable to bind it.
	sctx, scancel := context.WithTimeout(context.Background(), roleChangeTimeout)
	defer scancel()
	if err := r.step(sctx, want, gs); err != nil {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		r.logger.Error("cluster: cannot take the role the controllers gave", "role", want, "epoch", gs.Epoch, "err", err)
		return true
	}
	if want == "master" {
		r.renewLease(sent.Add(r.opts.Lease))
		r.proposeInSync(ctx, gs)
	}
	return true
}

// logEpoch is the last epoch in the store's log, 0 when none.
func (r *RoleManager) logEpoch() int64 {
	eps, err := replication.Epochs(r.opts.Store)
	if err != nil || len(eps) == 0 {
		return 0
	}
	return eps[len(eps)-1].N
}

// step makes the broker want ("master", "replica" or "" for none) as gs
// says. Only the loop (and Close, after it) calls it.
func (r *RoleManager) step(ctx context.Context, want string, gs controller.GroupState) error {
	r.mu.Lock()
	kind, epoch := r.kind, r.epoch
	r.mu.Unlock()
	if kind == "master" && (want != "master" || gs.Epoch != epoch) {
		r.demote(ctx, gs)
		kind = ""
	}
	switch want {
	case "master":
		if kind == "master" {
			return nil
		}
		return r.promote(ctx, gs)
	case "replica":
		return r.follow(ctx, gs)
	default:
		r.stopReader(ctx)
		r.unfollow()
		r.mu.Lock()
		r.kind = ""
		r.mu.Unlock()
		return nil
	}
}

// unfollow stops the copy of the master's log, if the broker makes one.
func (r *RoleManager) unfollow() {
	r.mu.Lock()
	rep := r.replica
	r.replica, r.follows = nil, ""
	r.mu.Unlock()
	if rep != nil {
		rep.Close()
	}
}

// promote makes the broker master of gs.Epoch: it stops following, writes
// the epoch's record, serves its replicas and starts the serving half.
func (r *RoleManager) promote(ctx context.Context, gs controller.GroupState) error {
	// The reader half holds the ports the master's half listens on.
	r.stopReader(ctx)
	r.unfollow()
	// Everything copied so far must be indexed: the epoch history and the
	// core's state are read from the indexes.
	if err := r.opts.Store.WaitIndexed(ctx, r.opts.Store.EndOffset()); err != nil {
		return err
	}
	last := r.logEpoch()
	if last > gs.Epoch {
		return fmt.Errorf("the log has epoch %d, later than the controllers' %d: refusing to be master", last, gs.Epoch)
	}
	// A master's log takes its own appends only.
	r.opts.Store.FenceRaw(ErrIsMaster)
	r.fence(nil)
	if last < gs.Epoch {
		ep, err := replication.BeginEpoch(ctx, r.opts.Store, gs.Epoch)
		if err != nil {
			r.fence(ErrNotMaster)
			return fmt.Errorf("writing epoch %d's record: %w", gs.Epoch, err)
		}
		r.logger.Info("cluster: epoch begins", "epoch", ep.N, "offset", ep.Start)
	}
	// In sync mode the master makes itself the store's ack gate; readers
	// then see what its in-sync replicas confirmed, and all it had before.
	m := replication.NewMaster(r.opts.Store, r.opts.Replication, gs.Epoch, r.logger)
	if err := r.opts.Store.WaitIndexed(ctx, r.opts.Store.EndOffset()); err != nil {
		r.opts.Store.SetAckGate(nil)
		r.fence(ErrNotMaster)
		return err
	}
	m.SetInSync(replicasOf(gs.InSync, r.opts.Identity.ID))
	accepted := make(chan net.Conn)
	go m.Serve(&chanListener{ch: accepted, addr: r.opts.Listener.Addr(), done: make(chan struct{})})
	r.mu.Lock()
	r.master, r.accepted, r.kind, r.epoch = m, accepted, "master", gs.Epoch
	r.stats.Promotions++
	r.mu.Unlock()
	if err := r.opts.Serving.Start(ctx, ServeMaster, gs.Epoch); err != nil {
		r.demote(ctx, gs)
		err = fmt.Errorf("cannot serve as master of epoch %d: %w", gs.Epoch, err)
		if r.opts.Fatal != nil {
			r.opts.Fatal(err)
		}
		return err
	}
	r.logger.Info("cluster: this broker is master", "group", gs.Group, "epoch", gs.Epoch, "in_sync", gs.InSync)
	return nil
}

// demote stops the master: no write is taken from now on, the serving half
// stops, the replicas are let go.
func (r *RoleManager) demote(ctx context.Context, gs controller.GroupState) {
	r.fence(ErrNotMaster)
	r.mu.Lock()
	m, epoch := r.master, r.epoch
	r.master, r.accepted, r.kind, r.epoch = nil, nil, "", 0
	if r.lease != nil {
		r.lease.Stop()
	}
	r.stats.Demotions++
	r.mu.Unlock()
	if err := r.opts.Serving.Stop(ctx); err != nil {
		r.logger.Error("cluster: stopping the serving half", "err", err)
	}
	r.opts.Store.SetAckGate(nil)
	if m != nil {
		m.Close()
	}
	r.logger.Warn("cluster: this broker is no longer master", "epoch", epoch, "new_master", gs.MasterID, "new_epoch", gs.Epoch)
}

// follow makes the broker a replica of gs's master, serving reads.
func (r *RoleManager) follow(ctx context.Context, gs controller.GroupState) error {
	addr := ""
	if gs.MasterID >= 0 {
		addr = gs.MasterAddr
	}
	r.mu.Lock()
	rep := r.replica
	if rep == nil {
		// A replica's store takes the copied records only (AppendRaw,
		// which Fence does not block): it stays fenced, so that its
		// follower core writes nothing.
		r.fenceLocked(ErrNotMaster)
		r.opts.Store.FenceRaw(nil)
		rep = replication.NewReplica(r.opts.Store, r.opts.Replication, r.opts.Identity.Name, r.opts.Identity.ID, r.logger)
		r.replica, r.kind = rep, "replica"
		r.logger.Info("cluster: this broker is a replica", "group", gs.Group, "master", gs.MasterID, "epoch", gs.Epoch)
	}
	changed := r.follows != addr
	r.follows = addr
	r.mu.Unlock()
	if changed {
		rep.Follow(addr)
	}
	r.startReader(ctx, gs.Epoch)
	return nil
}

// startReader starts the serving half as a reader unless it runs. A
// failure is logged and tried again at the next heartbeat: the copy goes
// on meanwhile.
func (r *RoleManager) startReader(ctx context.Context, epoch int64) {
	r.mu.Lock()
	reading := r.reading
	r.mu.Unlock()
	if reading {
		return
	}
	if err := r.opts.Serving.Start(ctx, ServeReader, epoch); err != nil {
		r.mu.Lock()
		first := r.readerErr != err.Error()
		r.readerErr = err.Error()
		r.mu.Unlock()
		level := slog.LevelDebug // tried again at every heartbeat: said once
		if first {
			level = slog.LevelError
		}
		r.logger.Log(ctx, level, "cluster: cannot serve reads as a replica; following the master meanwhile", "err", err)
		return
	}
	r.mu.Lock()
	r.reading, r.readerErr = true, ""
	r.mu.Unlock()
	r.logger.Info("cluster: this replica serves reads", "id", r.opts.Identity.ID, "epoch", epoch)
}

// stopReader stops the serving half if it runs as a reader.
func (r *RoleManager) stopReader(ctx context.Context) {
	r.mu.Lock()
	reading := r.reading
	r.reading = false
	r.mu.Unlock()
	if !reading {
		return
	}
	if err := r.opts.Serving.Stop(ctx); err != nil {
		r.logger.Error("cluster: stopping the replica's reader half", "err", err)
	}
}

// renewLease lets the master acknowledge writes until end, and lifts a
// fence its expiry set.
func (r *RoleManager) renewLease(end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind != "master" {
		return
	}
	r.leaseEnd = end
	if errors.Is(r.fenced, ErrLeaseExpired) {
		r.fenceLocked(nil)
		r.logger.Info("cluster: the controllers confirm this master again; taking writes", "epoch", r.epoch)
	}
	d := time.Until(end)
	if r.lease == nil {
		r.lease = time.AfterFunc(d, r.leaseExpired)
	} else {
		r.lease.Reset(d)
	}
}

// leaseExpired fences a master the controllers did not confirm in time.
func (r *RoleManager) leaseExpired() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind != "master" || time.Now().Before(r.leaseEnd) || r.fenced != nil {
		return
	}
	r.fenceLocked(ErrLeaseExpired)
	r.stats.LeaseExpiries++
	r.logger.Error("cluster: lease expired: this master acknowledges no more writes until the controllers confirm it", "epoch", r.epoch)
}

// fence makes the store refuse writes with err (nil: take them).
func (r *RoleManager) fence(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fenceLocked(err)
}

// fenceLocked is fence; the caller holds mu. The store's fence and
// fenced, which Status reports, change together.
func (r *RoleManager) fenceLocked(err error) {
	r.fenced = err
	r.opts.Store.Fence(err)
}

// proposeInSync asks the controllers to change the in-sync set when the
// master's view of its replicas differs from the set they keep.
func (r *RoleManager) proposeInSync(ctx context.Context, gs controller.GroupState) {
	r.mu.Lock()
	m := r.master
	r.mu.Unlock()
	if m == nil {
		return
	}
	m.SetInSync(replicasOf(gs.InSync, r.opts.Identity.ID))
	ids, changed := m.Proposal()
	if !changed {
		return
	}
	want := append([]int64{r.opts.Identity.ID}, ids...)
	slices.Sort(want)
	ns, err := r.opts.Controller.AlterInSync(ctx, gs.Group, r.opts.Identity.ID, gs.Epoch, want)
	if err != nil {
		r.logger.Warn("cluster: the controllers did not change the in-sync set", "want", want, "err", err)
		return
	}
	m.SetInSync(replicasOf(ns.InSync, r.opts.Identity.ID))
	r.mu.Lock()
	r.group = ns
	r.mu.Unlock()
	r.logger.Info("cluster: in-sync set changed", "from", gs.InSync, "to", ns.InSync, "epoch", ns.Epoch)
}

// replicasOf is ids without the master's own.
func replicasOf(ids []int64, master int64) []int64 {
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if id != master {
			out = append(out, id)
		}
	}
	return out
}

// chanListener is a net.Listener fed by the role's accept loop: one per
// mastership, so that closing it (the master's Close) leaves the real
// listener open for the next.
type chanListener struct {
	ch   chan net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
