package controller

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/ferrymq/ferry/remoting"
)

// Bounds on the replicated state, so that no broker of the cluster can grow
// it without limit (every controller keeps it in memory and in snapshots).
const (
	// MaxGroups is how many broker groups the controller keeps.
	MaxGroups = 10000
	// MaxGroupBrokers is how many brokers one group may have.
	MaxGroupBrokers = 64
)

// The replicated commands (command.Op).
const (
	opRegister = "register" // a broker joins its group, or its addresses changed
	opElect    = "elect"    // the leader's janitor names a new master
	opAlter    = "alter"    // the master changes its in-sync set
	opNode     = "node"     // a controller that became leader says where its RPC listener is
)

// command is one entry of the Raft log, JSON-encoded. Elect and alter carry
// the epoch they expect: applied to a group that has moved on since the
// leader decided, they are refused (compare-and-set), so a decision taken
// on stale state never lands.
type command struct {
	Op              string  `json:"op"`
	Group           string  `json:"group,omitempty"`
	Cluster         string  `json:"cluster,omitempty"`
	ID              int64   `json:"id,omitempty"`
	ReplicationAddr string  `json:"replicationAddr,omitempty"`
	NativeAddr      string  `json:"nativeAddr,omitempty"`
	Epoch           int64   `json:"epoch,omitempty"`
	MasterID        int64   `json:"masterId,omitempty"`
	InSync          []int64 `json:"inSync,omitempty"`
	Node            string  `json:"node,omitempty"`
	Addr            string  `json:"addr,omitempty"`
}

// group is one broker group's replicated state.
type group struct {
	Name     string            `json:"name"`
	Cluster  string            `json:"cluster"`
	Epoch    int64             `json:"epoch"`
	MasterID int64             `json:"masterId"`
	InSync   []int64           `json:"inSync"` // the master included, sorted
	Brokers  map[int64]*member `json:"brokers"`
}

// member is a broker of a group as the controllers know it.
type member struct {
	ID              int64  `json:"id"`
	ReplicationAddr string `json:"replicationAddr"`
	NativeAddr      string `json:"nativeAddr"`
}

// state is everything the FSM replicates; it is also the snapshot's JSON.
type state struct {
	Groups map[string]*group `json:"groups"`
	// Nodes maps a controller's Raft id to its RPC address, written by
	// each controller when it becomes leader: followers answer a broker
	// with the leader's address from it.
	Nodes map[string]string `json:"nodes"`
}

func newState() *state {
	return &state{Groups: map[string]*group{}, Nodes: map[string]string{}}
}

// fsm is the raft.FSM of the controllers. Its methods are safe for
// concurrent use: raft applies on its own goroutine while the RPC handlers
// and the janitor read.
type fsm struct {
	mu sync.RWMutex
	st *state
}

func newFSM() *fsm { return &fsm{st: newState()} }

// Refusals the FSM gives, as remoting errors with RocketMQ's controller
// response codes.
func fenced(format string, a ...any) error {
	return &remoting.Error{Code: CodeFencedEpoch, Remark: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) error {
	return &remoting.Error{Code: CodeInvalidRequest, Remark: fmt.Sprintf(format, a...)}
}

// Apply applies one committed command. It returns nil or the error that
// refused it (the same on every controller: the decision is deterministic).
func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return invalid("controller: undecodable log entry %d: %v", l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apply(c)
}

func (f *fsm) apply(c command) error {
	switch c.Op {
	case opNode:
		f.st.Nodes[c.Node] = c.Addr
		return nil
	case opRegister:
		g := f.st.Groups[c.Group]
		if g == nil {
			if len(f.st.Groups) >= MaxGroups {
				return invalid("controller: %d broker groups, the most the controller keeps", MaxGroups)
			}
			// The first broker of a new group is its master, of epoch 1.
			g = &group{Name: c.Group, Cluster: c.Cluster, Epoch: 1, MasterID: c.ID, InSync: []int64{c.ID}, Brokers: map[int64]*member{}}
			f.st.Groups[c.Group] = g
		}
		if g.Cluster != c.Cluster {
			return invalid("controller: broker group %s is in cluster %s, not %s", g.Name, g.Cluster, c.Cluster)
		}
		if g.Brokers[c.ID] == nil && len(g.Brokers) >= MaxGroupBrokers {
			return invalid("controller: broker group %s has %d brokers, the most a group may have", g.Name, MaxGroupBrokers)
		}
		g.Brokers[c.ID] = &member{ID: c.ID, ReplicationAddr: c.ReplicationAddr, NativeAddr: c.NativeAddr}
		return nil
	case opElect:
		g := f.st.Groups[c.Group]
		if g == nil {
			return invalid("controller: no broker group %s", c.Group)
		}
		if g.Epoch != c.Epoch {
			return fenced("controller: group %s is at epoch %d, the election was decided at %d", g.Name, g.Epoch, c.Epoch)
		}
		if g.Brokers[c.MasterID] == nil {
			return invalid("controller: broker %d is not a member of group %s", c.MasterID, g.Name)
		}
		g.MasterID = c.MasterID
		g.Epoch++
		g.InSync = []int64{c.MasterID}
		return nil
	case opAlter:
		g := f.st.Groups[c.Group]
		if g == nil {
			return invalid("controller: no broker group %s", c.Group)
		}
		if g.MasterID != c.MasterID || g.Epoch != c.Epoch {
			return fenced("controller: group %s's master is broker %d of epoch %d; broker %d of epoch %d may not change its in-sync set",
				g.Name, g.MasterID, g.Epoch, c.MasterID, c.Epoch)
		}
		set := []int64{c.MasterID}
		for _, id := range c.InSync {
			if g.Brokers[id] == nil {
				return invalid("controller: broker %d is not a member of group %s", id, g.Name)
			}
			set = append(set, id)
		}
		slices.Sort(set)
		g.InSync = slices.Compact(set)
		return nil
	default:
		return invalid("controller: unknown command %q", c.Op)
	}
}

// read calls fn with the state under the read lock; fn must not keep it.
func (f *fsm) read(fn func(st *state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Snapshot copies the state (as JSON, under the lock) for raft to persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(f.st)
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := newState()
	if err := json.NewDecoder(rc).Decode(st); err != nil {
		return fmt.Errorf("controller: snapshot: %w", err)
	}
	if st.Groups == nil {
		st.Groups = map[string]*group{}
	}
	if st.Nodes == nil {
		st.Nodes = map[string]string{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// groupNames is the state's group names, sorted.
func (st *state) groupNames() []string {
	names := make([]string, 0, len(st.Groups))
	for n := range st.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
