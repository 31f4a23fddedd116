package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// Replica copies its master's log into s: one fetcher goroutine dials the
// master Follow names, handshakes, cuts its log where it diverges from the
// master's, appends what the master sends and acknowledges what is durable
// under its own flush policy; it redials with back-off. The store must not
// be fenced, and nothing else may append to it.
//
// Goroutines: the fetcher (owned by Follow and Close) and, during a
// session, its acknowledger. Lock: mu guards the fetcher and the status.
type Replica struct {
	s      *storage.Store
	cfg    Config
	group  string
	id     int64
	logger *slog.Logger

	mu        sync.Mutex
	addr      string
	cancel    context.CancelFunc
	done      chan struct{}
	connected bool
	acked     int64
	masterEnd int64
}

// NewReplica makes the replica id of group over s; it fetches nothing
// until Follow names a master.
func NewReplica(s *storage.Store, cfg Config, group string, id int64, logger *slog.Logger) *Replica {
	if logger == nil {
		logger = slog.Default()
	}
	return &Replica{s: s, cfg: cfg.withDefaults(), group: group, id: id, logger: logger}
}

// Follow points the fetcher at the master's replication address; "" stops
// fetching. Following the same address again changes nothing.
func (r *Replica) Follow(masterAddr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if masterAddr == r.addr {
		return
	}
	r.stopLocked()
	r.addr = masterAddr
	if masterAddr == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.run(ctx, masterAddr, r.done)
}

// stopLocked stops the fetcher and waits for it. Caller holds mu; the
// fetcher takes mu only briefly and never waits on it while stopping.
func (r *Replica) stopLocked() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	done := r.done
	r.mu.Unlock()
	<-done
	r.mu.Lock()
	r.cancel, r.done, r.connected = nil, nil, false
}

// Close stops fetching.
func (r *Replica) Close() error {
	r.Follow("")
	return nil
}

// Status is the replica as it sees itself: its master, whether it is
// connected, what it acknowledged and how far behind the master's end (as
// last heard) it is.
func (r *Replica) Status() ReplicaStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return ReplicaStatus{ID: r.id, Addr: r.addr, Connected: r.connected, Acked: r.acked,
		Lag: max(0, r.masterEnd-r.s.EndOffset())}
}

// run fetches from addr until ctx ends, redialling with back-off.
func (r *Replica) run(ctx context.Context, addr string, done chan struct{}) {
	defer close(done)
	backoff := 100 * time.Millisecond
	log := r.logger.With("master", addr)
	for {
		began, err := r.session(ctx, addr, log)
		r.mu.Lock()
		r.connected = false
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if began {
			backoff = 100 * time.Millisecond
		}
		log.Warn("replication: fetching from the master stopped; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session is one connection to the master. began reports whether the
// handshake succeeded.
func (r *Replica) session(ctx context.Context, addr string, log *slog.Logger) (began bool, err error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	start, err := r.handshake(c, br, &buf)
	if err != nil {
		return false, err
	}
	log.Info("replication: copying from the master", "from", start, "end", r.s.EndOffset())
	r.mu.Lock()
	r.connected = true
	r.mu.Unlock()

	ackCtx, cancelAcks := context.WithCancel(ctx)
	kick := make(chan struct{}, 1)
	ackDone := make(chan error, 1)
	go func() { ackDone <- r.acknowledge(ackCtx, c, kick) }()
	defer func() {
		cancelAcks()
		c.Close()
		if aerr := <-ackDone; err == nil && aerr != nil && ctx.Err() == nil {
			err = aerr
		}
	}()
	for {
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		t, payload, err := readFrame(br, &buf, r.cfg.MaxFrame)
		if err != nil {
			return true, err
		}
		if t != frameData {
			return true, fmt.Errorf("%w: frame type %d from the master, want DATA", errMalformed, t)
		}
		x, err := decodeData(payload)
		if err != nil {
			return true, err
		}
		if len(x.records) > 0 {
			if err := r.s.AppendRaw(x.off, x.records); err != nil {
				return true, fmt.Errorf("replication: copy at log offset %d: %w", x.off, err)
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		r.mu.Lock()
		r.masterEnd = x.masterEnd
		r.mu.Unlock()
	}
}

// handshake runs the replica's side and cuts the log where the master
// says; it returns the offset the copy goes on from.
func (r *Replica) handshake(c net.Conn, br *bufio.Reader, buf *[]byte) (int64, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	t, payload, err := readFrame(br, buf, 1024)
	if err != nil {
		return 0, err
	}
	if t != frameChallenge {
		return 0, fmt.Errorf("%w: frame type %d, want CHALLENGE", errMalformed, t)
	}
	ch, err := decodeChallenge(payload)
	if err != nil {
		return 0, err
	}
	if ch.version != protocolVersion {
		return 0, fmt.Errorf("replication: the master speaks protocol version %d, this replica %d", ch.version, protocolVersion)
	}
	hist, err := Epochs(r.s)
	if err != nil {
		return 0, err
	}
	end := r.s.EndOffset()
	h := hello{version: protocolVersion, group: r.group, id: r.id, segSize: r.s.SegmentSize(),
		logID: r.s.LogID(), end: end, epochs: hist}
	if len(h.group) > maxGroupLen {
		return 0, fmt.Errorf("replication: group name of %d bytes, at most %d", len(h.group), maxGroupLen)
	}
	var sign func([]byte) []byte
	if r.cfg.Key != nil {
		sign = func(unsigned []byte) []byte { return r.cfg.Key.ReplicationMAC(ch.nonce, unsigned) }
	}
	if _, err := c.Write(h.encode(sign)); err != nil {
		return 0, err
	}
	t, payload, err = readFrame(br, buf, 4096)
	if err != nil {
		return 0, err
	}
	switch t {
	case frameRefuse:
		reason, err := decodeRefuse(payload)
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %s", ErrRefused, reason)
	case frameTruncate:
	default:
		return 0, fmt.Errorf("%w: frame type %d, want TRUNCATE or REFUSE", errMalformed, t)
	}
	tr, err := decodeTruncate(payload)
	if err != nil {
		return 0, err
	}
	if tr.off > end {
		return 0, fmt.Errorf("replication: the master says to go on from log offset %d, past this log's end %d", tr.off, end)
	}
	if tr.logID != r.s.LogID() {
		if end != 0 || tr.off != 0 {
			return 0, fmt.Errorf("replication: the master's log id %016x is not this log's %016x", tr.logID, r.s.LogID())
		}
		if err := r.s.SetLogID(tr.logID); err != nil {
			return 0, err
		}
	}
	if tr.off < end {
		r.logger.Warn("replication: this log diverges from the master's; cutting it",
			"offset", tr.off, "end", end, "bytes", end-tr.off, "master_epoch", tr.epoch)
		if err := r.s.Truncate(tr.off); err != nil {
			return 0, fmt.Errorf("replication: truncate to %d: %w", tr.off, err)
		}
	}
	return tr.off, nil
}

// acknowledge sends ACK frames with the log end that is durable under the
// store's flush policy: after each append (kick) and every ackEvery.
func (r *Replica) acknowledge(ctx context.Context, c net.Conn, kick <-chan struct{}) error {
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-tick.C:
		}
		end := r.s.EndOffset()
		if err := r.s.WaitDurable(ctx, end); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		if end == last {
			// Nothing new: the tick still tells the master this replica lives.
			select {
			case <-kick:
				continue
			default:
			}
		}
		c.SetWriteDeadline(time.Now().Add(idleTimeout))
		if _, err := c.Write(encodeAck(end)); err != nil {
			return err
		}
		last = end
		r.mu.Lock()
		r.acked = end
		r.mu.Unlock()
	}
}
