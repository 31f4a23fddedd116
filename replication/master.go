package replication

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// Master serves the log to the replicas of its group and keeps what each
// has acknowledged. In sync mode it is the store's ack gate: an append is
// acknowledged once MinInsync-1 replicas of the controller-approved in-sync
// set have it under their flush policy.
//
// Goroutines: Serve's accept loop (the caller's), and per replica
// connection a sender (serveConn) and an ack reader; Close stops them and
// waits. Lock: mu guards peers, inSync and changed; it is a leaf.
type Master struct {
	s     *storage.Store
	cfg   Config
	epoch int64
	// floor is the log's end when this master was made: what it had then
	// is the group's, confirmed whatever its replicas have (Confirmed).
	floor  int64
	logger *slog.Logger

	mu       sync.Mutex
	closed   bool
	ln       net.Listener
	peers    map[int64]*peer
	conns    map[net.Conn]bool
	inSync   map[int64]bool
	proposed []int64       // the set last returned by Proposal
	changed  chan struct{} // closed when an ack or the in-sync set changes

	wg sync.WaitGroup
}

// peer is one replica, kept across its reconnections.
type peer struct {
	id        int64
	addr      string
	conn      net.Conn // nil when disconnected
	acked     int64
	caughtUp  time.Time // the replica had all the master had then
	target    int64     // a master end the replica has yet to reach…
	targetAt  time.Time // …and when it was the end
	connected bool
}

// NewMaster makes the master of epoch for s. In sync mode it installs
// itself as s's ack gate; after Close, acknowledged appends fail until the
// gate is replaced or removed (s.SetAckGate), so fence the store first.
func NewMaster(s *storage.Store, cfg Config, epoch int64, logger *slog.Logger) *Master {
	if logger == nil {
		logger = slog.Default()
	}
	m := &Master{s: s, cfg: cfg.withDefaults(), epoch: epoch, logger: logger, floor: s.EndOffset(),
		peers: map[int64]*peer{}, conns: map[net.Conn]bool{}, inSync: map[int64]bool{}, changed: make(chan struct{})}
	if m.cfg.Mode == "sync" {
		s.SetAckGate(m)
	}
	return m
}

// Serve accepts replicas on ln until Close, which closes ln.
func (m *Master) Serve(ln net.Listener) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		ln.Close()
		return nil
	}
	m.ln = ln
	m.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			m.mu.Lock()
			closed := m.closed
			m.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("replication: accept: %w", err)
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			c.Close()
			return nil
		}
		m.conns[c] = true
		m.wg.Add(1)
		m.mu.Unlock()
		go m.serveConn(c)
	}
}

// Close stops serving: the listener, every connection, and every append
// waiting on the gate (ErrMasterClosed). It waits for the goroutines.
func (m *Master) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.ln != nil {
		m.ln.Close()
	}
	for c := range m.conns {
		c.Close()
	}
	m.broadcast()
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// broadcast wakes the gate's waiters. Caller holds mu.
func (m *Master) broadcast() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Wait is the ack gate (storage.AckGate): it returns once MinInsync-1
// members of the in-sync set have acknowledged the log up to end, or
// ErrNotEnoughReplicas at once when the set is too small for that.
func (m *Master) Wait(ctx context.Context, end int64) error {
	need := m.cfg.MinInsync - 1
	if need <= 0 {
		return nil
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return ErrMasterClosed
		}
		have := 0
		for id := range m.inSync {
			if p := m.peers[id]; p != nil && p.acked >= end {
				have++
			}
		}
		members := len(m.inSync)
		ch := m.changed
		m.mu.Unlock()
		if have >= need {
			return nil
		}
		if members < need {
			return tooFew(members, need)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replication: stored, but %d of %d in-sync replicas confirmed it: %w", have, need, ctx.Err())
		}
	}
}

// tooFew is the refusal of an append while the in-sync set has fewer than
// need members besides the master.
func tooFew(members, need int) error {
	return fmt.Errorf("%w: %d in-sync replicas besides the master, %d needed", ErrNotEnoughReplicas, members, need)
}

// Admit is the storage.Admitter of the sync mode: with fewer in-sync
// replicas than MinInsync-1 the master refuses a write before storing it.
func (m *Master) Admit() error {
	need := m.cfg.MinInsync - 1
	if need <= 0 {
		return nil
	}
	m.mu.Lock()
	members, closed := len(m.inSync), m.closed
	m.mu.Unlock()
	if closed {
		return ErrMasterClosed
	}
	if members < need {
		return tooFew(members, need)
	}
	return nil
}

// Confirmed is the storage.Confirmer of the sync mode: the log is
// confirmed up to where MinInsync-1 in-sync replicas have it, and at
// least up to the floor. The store indexes no further, so consumers never
// read what a failover could take back.
func (m *Master) Confirmed() int64 {
	need := m.cfg.MinInsync - 1
	if need <= 0 {
		return math.MaxInt64
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var acks []int64
	for id := range m.inSync {
		if p := m.peers[id]; p != nil {
			acks = append(acks, p.acked)
		}
	}
	c := m.floor
	if len(acks) >= need {
		slices.Sort(acks)
		c = max(c, acks[len(acks)-need])
	}
	return c
}

// SetInSync sets the controller-approved in-sync set: replica ids, the
// master excluded.
func (m *Master) SetInSync(ids []int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inSync = make(map[int64]bool, len(ids))
	for _, id := range ids {
		m.inSync[id] = true
	}
	m.broadcast()
	m.s.KickDispatch() // the confirmed offset may have moved
}

// Proposal is the in-sync set the master wants now: the connected replicas
// within MaxLag bytes of its end that had all it had within MaxLagTime.
// changed says whether it differs from the approved set; the role manager
// then asks the controller to apply it.
func (m *Master) Proposal() (ids []int64, changed bool) {
	end := m.s.EndOffset()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.peers {
		if m.eligible(p, end, now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	changed = len(ids) != len(m.inSync)
	for _, id := range ids {
		changed = changed || !m.inSync[id]
	}
	m.proposed = ids
	return ids, changed
}

func (m *Master) eligible(p *peer, end int64, now time.Time) bool {
	return p.connected && end-p.acked <= m.cfg.MaxLag && now.Sub(p.caughtUp) <= m.cfg.MaxLagTime
}

// Replicas returns every replica known since the master started, by id.
func (m *Master) Replicas() []ReplicaStatus {
	end := m.s.EndOffset()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ReplicaStatus, 0, len(m.peers))
	for _, p := range m.peers {
		st := ReplicaStatus{ID: p.id, Addr: p.addr, Connected: p.connected, Acked: p.acked,
			Lag: max(0, end-p.acked), InSync: m.inSync[p.id]}
		if p.acked < end {
			st.LagTime = now.Sub(p.caughtUp)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ack records that replica p has the log up to off.
func (m *Master) ack(p *peer, off int64) {
	end := m.s.EndOffset()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if off <= p.acked && off < end {
		return
	}
	p.acked = max(p.acked, off)
	switch {
	case p.acked >= end:
		p.caughtUp, p.target = now, end
	case p.acked >= p.target:
		// It reached the end the master had at targetAt: it was caught
		// up then. Its next target is the end now.
		p.caughtUp = p.targetAt
		p.target, p.targetAt = end, now
	}
	m.broadcast()
	m.s.KickDispatch() // the confirmed offset may have moved
}

// serveConn handshakes with a replica and then streams the log to it.
func (m *Master) serveConn(c net.Conn) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.conns, c)
		m.mu.Unlock()
		c.Close()
	}()
	log := m.logger.With("replica_addr", c.RemoteAddr().String())
	p, start, err := m.handshake(c)
	if err != nil {
		log.Warn("replication: replica refused", "err", err)
		return
	}
	log = log.With("replica", p.id)
	log.Info("replication: replica connected", "from", start, "end", m.s.EndOffset())
	done := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		if err := m.readAcks(c, p); err != nil {
			log.Warn("replication: replica connection ended", "err", err)
		}
		c.Close()
	}()
	if err := m.send(c, start, done); err != nil {
		log.Warn("replication: sending to replica stopped", "err", err)
	}
	c.Close()
	<-done
	m.mu.Lock()
	if p.conn == c {
		p.conn, p.connected = nil, false
	}
	m.broadcast()
	m.mu.Unlock()
}

// handshake runs the master's side: CHALLENGE, HELLO, then TRUNCATE or
// REFUSE. It returns the replica and the offset its copy goes on from.
func (m *Master) handshake(c net.Conn) (*peer, int64, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, 0, err
	}
	if _, err := c.Write(challenge{version: protocolVersion, nonce: nonce}.encode()); err != nil {
		return nil, 0, err
	}
	var buf []byte
	t, payload, err := readFrame(c, &buf, min(m.cfg.MaxFrame, 4<<20))
	if err != nil {
		return nil, 0, err
	}
	if t != frameHello {
		return nil, 0, fmt.Errorf("%w: frame type %d, want HELLO", errMalformed, t)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return nil, 0, err
	}
	refuse := func(format string, args ...any) (*peer, int64, error) {
		reason := fmt.Sprintf(format, args...)
		c.Write(encodeRefuse(reason))
		return nil, 0, fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	if m.cfg.Key != nil && (len(h.mac) == 0 || !hmac.Equal(h.mac, m.cfg.Key.ReplicationMAC(nonce, h.unsigned))) {
		return refuse("the handshake is not signed with this cluster's secret")
	}
	if h.version != protocolVersion {
		return refuse("protocol version %d, this master speaks %d", h.version, protocolVersion)
	}
	if m.cfg.Group != "" && h.group != m.cfg.Group {
		return refuse("replica of group %q, this master is of %q", h.group, m.cfg.Group)
	}
	if h.segSize != m.s.SegmentSize() {
		return refuse("segment size %d, the master's is %d (storage.segment-size must match)", h.segSize, m.s.SegmentSize())
	}
	if k := len(h.epochs); k > 0 && h.epochs[k-1].N > m.epoch {
		return refuse("the replica has seen epoch %d, this master is of epoch %d: it is stale", h.epochs[k-1].N, m.epoch)
	}
	if h.logID != m.s.LogID() && h.end != 0 {
		return refuse("the replica holds another log (id %016x, the master's is %016x); empty its data directory to copy this one", h.logID, m.s.LogID())
	}
	// The history is read from the indexes: wait until they hold what
	// the master began with, its own epoch's record included.
	ictx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err = m.s.WaitIndexed(ictx, m.floor)
	cancel()
	if err != nil {
		return refuse("the master has not indexed its log yet: %v", err)
	}
	hist, err := Epochs(m.s)
	if err != nil {
		return refuse("the master cannot read its epoch history: %v", err)
	}
	end := m.s.EndOffset()
	start := divergence(h.epochs, hist, h.end, end)
	if lo := m.s.MinOffset(); start < lo {
		return refuse("the copy would go on from log offset %d, but the master's log starts at %d (retention)", start, lo)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, 0, ErrMasterClosed
	}
	p := m.peers[h.id]
	if p == nil {
		p = &peer{id: h.id}
		m.peers[h.id] = p
	}
	if p.conn != nil {
		p.conn.Close() // the replica reconnected; its old connection is dead
	}
	now := time.Now()
	p.addr, p.conn, p.connected, p.acked = c.RemoteAddr().String(), c, true, start
	p.target, p.targetAt = end, now
	m.broadcast()
	m.mu.Unlock()
	if _, err := c.Write(truncate{logID: m.s.LogID(), off: start, epoch: m.epoch}.encode()); err != nil {
		return nil, 0, err
	}
	return p, start, nil
}

// send streams the log from off until the connection or the master ends.
func (m *Master) send(c net.Conn, off int64, done <-chan struct{}) error {
	w := bufio.NewWriterSize(c, 64<<10)
	maxChunk := m.cfg.MaxFrame - dataHeader
	var hdr [dataHeader]byte
	for {
		b, next, err := m.s.ReadRaw(off, maxChunk)
		if err != nil {
			return err
		}
		if len(b) > maxChunk {
			return fmt.Errorf("the record at log offset %d is %d bytes, more than replication.max-frame allows (%d)", off, len(b), maxChunk)
		}
		if b == nil {
			if err := w.Flush(); err != nil {
				return err
			}
			select {
			case <-m.s.WaitEnd(off):
				continue
			case <-done:
				return nil
			case <-time.After(heartbeatEvery):
			}
		}
		c.SetWriteDeadline(time.Now().Add(idleTimeout))
		putDataHeader(hdr[:], off, m.s.EndOffset(), len(b))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		off = next // flushed when the copy has caught up (ReadRaw finds nothing)
	}
}

// readAcks reads the replica's ACK frames until the connection ends.
func (m *Master) readAcks(c net.Conn, p *peer) error {
	r := bufio.NewReader(c)
	var buf []byte
	for {
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		t, payload, err := readFrame(r, &buf, 64)
		if err != nil {
			return err
		}
		if t != frameAck {
			return fmt.Errorf("%w: frame type %d from a replica, want ACK", errMalformed, t)
		}
		off, err := decodeAck(payload)
		if err != nil {
			return err
		}
		m.ack(p, off)
	}
}
