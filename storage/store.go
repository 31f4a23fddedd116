package storage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrymq/ferry/internal/lograte"
)

// Store is Ferry's message store: one commit log shared by all topics, a
// consume-queue index per (topic, queue) and a key index, both derived from
// the log by the dispatcher. See docs/storage.md.
//
// Goroutines, all owned by the Store and stopped by Close: the committer
// (writes the appends' buffers to the files), the dispatcher (builds the
// indexes, wakes readers; a commit of a small write indexes it itself),
// the flusher (fsync, group commit), the checkpointer (index fsyncs and
// checkpoints) and the janitor (retention).
//
// Lock order: dispatchMu, then cutMu, then flushRun, then commitMu, then Store.mu, then
// commitLog.mu, then segment.mu; queue and key index locks are leaves (a queue's writeMu
// before its tailMu and mu). flushMu is never held with another. A committer indexes what
// it wrote after it releases commitMu, and takes dispatchMu and cutMu only with TryLock
// (indexInline): it may hold flushRun or cutMu (a checkpoint, Truncate) meanwhile.
type Store struct {
	opts   Options
	dir    string
	logger *slog.Logger
	// appendErrors lets one failed append a minute reach the log: on a full
	// disk every publish fails, and each caller sees its error anyway.
	appendErrors lograte.Limiter
	logID        atomic.Uint64
	// guard, when set, runs before retention deletes a segment (SetRetentionGuard).
	guard atomic.Pointer[func(end int64) error]
	// fence, when set, is the error every append fails with (Fence).
	fence atomic.Pointer[error]
	// rawFence, when set, is the error AppendRaw fails with (FenceRaw).
	rawFence atomic.Pointer[error]
	// gate, when set, is waited on after local durability (SetAckGate).
	gate atomic.Pointer[gateBox]
	// endWake is closed by the committer when the committed end moves (WaitEnd).
	endWake atomic.Pointer[chan struct{}]
	lock    *os.File

	log  *commitLog
	keys *keyIndex
	cp   *os.File // index/checkpoint

	// mu is the write lock: the log's end, queue offsets, store time.
	mu            sync.Mutex
	closed        bool
	cutting       bool // Truncate runs: appends are refused
	writePos      int64
	nextOffset    map[queueKey]*int64 // next queue offset of each queue
	lastStoreTime int64
	clockBase     time.Time // wall and monotonic reading, renewed every second

	// Write buffers (commit.go), under mu: cur takes appends, queued wait
	// for the committer, pending counts their bytes; room is signalled when
	// the committer frees some.
	cur        *writeBuf
	queued     []*writeBuf
	spare      []*writeBuf
	pending    int
	room       *sync.Cond
	commitErr  error
	commitMu   sync.Mutex // one commit at a time, in order; taken before mu
	commitKick chan struct{}

	written atomic.Int64 // end of the records written to the files; moved by commit
	// writeWaiters counts the appends waiting for a write (waitWritten).
	writeWaiters atomic.Int32
	cutCount     atomic.Int64 // Truncate cuts so far (waitWritten)
	writes       atomic.Int64 // writes of buffers to the files (LogStats.Writes)
	dispatched   atomic.Int64 // the indexes cover the log up to here

	qmu    sync.RWMutex
	queues map[queueKey]*queue

	flushRun    sync.Mutex // one flushLog at a time: the flusher's, the checkpointer's, Close's
	flushMu     sync.Mutex
	flushed     int64         // durable up to here
	flushErr    error         // the last flush's error, nil once one succeeds
	cuts        int64         // Truncate calls so far
	flushDone   chan struct{} // closed at the end of each flush round
	flushKick   chan struct{}
	flushes     atomic.Int64 // fsync rounds of the log
	syncAppends atomic.Int64 // sync appends since the last round began
	gatherWant  int64        // how many a round expects; under flushRun
	flushNanos  atomic.Int64 // time spent in them
	// flushHist counts the rounds by duration, in FlushBuckets.
	flushHist [len(FlushBuckets) + 1]atomic.Int64

	appendedMsgs  atomic.Int64 // records appended since Open, counted once per batch
	appendedBytes atomic.Int64 // their encoded bytes

	// cutMu keeps indexing and checkpoints out while Truncate cuts
	// the log under them: they hold it for reading, Truncate for writing.
	cutMu sync.RWMutex

	// dispatchMu is held to index: by the dispatcher, or by a commit that
	// indexes what it wrote (indexInline). pend and keyPend are theirs.
	dispatchMu   sync.Mutex
	dispatchKick chan struct{}
	recovering   bool                  // set while Open rebuilds the indexes
	pend         map[queueKey]*pending // whoever indexes (dispatchMu)
	keyPend      map[int64][]byte      // whoever indexes (dispatchMu)
	wokenBuf     []Waker               // watchers of the queues indexed (dispatchMu)

	// woken are the watchers indexing woke, for wakeWatchers to call with
	// no lock held; wokenSpare is the list it last emptied, for reuse.
	wokenMu    sync.Mutex
	woken      []Waker
	wokenSpare []Waker
	wokenAny   atomic.Bool // woken is not empty

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type queueKey struct {
	topic string
	id    int
}

// pending holds index entries the dispatcher has yet to add to one queue.
type pending struct {
	q     *queue
	first int64
	buf   []byte
}

// Open opens the store in dir, creating it if needed, and recovers it: after
// a crash it checks the log's tail from the last checkpoint, truncates a torn
// tail and rebuilds the index entries past the checkpoint. It logs what it
// found and lost. Only one process may open a directory.
func Open(dir string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "index"), 0o755); err != nil {
		return nil, fmt.Errorf("storage: data directory: %w", err)
	}
	s := &Store{
		opts:         opts,
		dir:          dir,
		logger:       opts.Logger,
		nextOffset:   map[queueKey]*int64{},
		queues:       map[queueKey]*queue{},
		flushDone:    make(chan struct{}),
		flushKick:    make(chan struct{}, 1),
		dispatchKick: make(chan struct{}, 1),
		commitKick:   make(chan struct{}, 1),
		pend:         map[queueKey]*pending{},
		keyPend:      map[int64][]byte{},
		stop:         make(chan struct{}),
	}
	s.room = sync.NewCond(&s.mu)
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, err
	}
	s.wg.Add(5)
	go s.commitLoop()
	go s.dispatchLoop()
	go s.flushLoop()
	go s.checkpointLoop()
	go s.janitorLoop()
	return s, nil
}

func (s *Store) open() error {
	f, err := os.OpenFile(filepath.Join(s.dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	s.lock = f
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("%w: %s", ErrLocked, s.dir)
	}
	id, created, err := s.loadLogID()
	if err != nil {
		return err
	}
	s.logID.Store(id)
	if s.log, err = openCommitLog(filepath.Join(s.dir, "commitlog"), s.opts.SegmentSize); err != nil {
		return err
	}
	return s.recover(created)
}

// loadLogID reads the log's identity, made at creation: message ids carry
// it. It reports whether the store was created just now.
func (s *Store) loadLogID() (uint64, bool, error) {
	var id storeDoc
	ok, err := loadJSON(s.storeDocPath(), &id)
	if err != nil {
		return 0, false, err
	}
	if ok {
		return id.LogID, false, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, false, fmt.Errorf("storage: %w", err)
	}
	id.LogID = binary.BigEndian.Uint64(b[:])
	return id.LogID, true, saveJSON(s.storeDocPath(), id)
}

// storeDoc is store.json: the store's own document, its log's identity.
type storeDoc struct {
	LogID uint64 `json:"log_id"`
}

func (s *Store) storeDocPath() string { return filepath.Join(s.dir, "store.json") }

// LogID is the identity of the store's log, part of every message id.
func (s *Store) LogID() uint64 { return s.logID.Load() }

// SetLogID gives the log the identity id and records it, so that a log
// that belongs to a broker keeps the broker's identity (its owner keeps the
// identity in the log itself, and a copy of the log adopts it).
func (s *Store) SetLogID(id uint64) error {
	if s.logID.Load() == id {
		return nil
	}
	if err := saveJSON(s.storeDocPath(), storeDoc{LogID: id}); err != nil {
		return err
	}
	s.logID.Store(id)
	return nil
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Append stores m and sets its QueueOffset, LogOffset, StoreTime and Size.
// It returns once the message is durable under the flush policy: written
// to its segment file, in the OS's page cache, so that only a crash of the
// machine can lose it before the flusher's next fsync (async), or on disk
// (sync). Readers see it once it is committed and indexed. If ctx ends
// while the append waits for its write or fsync, the message is stored but
// its durability is not confirmed.
func (s *Store) Append(ctx context.Context, m *Message) error {
	_, err := s.AppendBatch(ctx, []*Message{m})
	return err
}

// AppendBatch stores msgs in order under one lock, and waits once for their
// write (async) or fsync (sync). It returns how many were stored: on an
// error, msgs[:n] are stored (and durable when err is nil or only ctx's).
func (s *Store) AppendBatch(ctx context.Context, msgs []*Message) (int, error) {
	// An async append writes the log itself (waitWritten) unless a write
	// is under way: the committer need not be woken.
	done, end, err := s.appendBatch(msgs, s.opts.FlushMode == FlushSync)
	if done > 0 {
		if werr := s.WaitDurable(ctx, end); werr != nil {
			return done, werr
		}
	}
	return done, err
}

// AppendBatchNoWait is AppendBatch without waiting for durability: it
// returns once msgs[:n] are in the write buffer, with the log offset their
// records end at. WaitDurable(ctx, end) waits for them to be durable under
// the flush policy, so a caller can go on appending meanwhile (a connection
// with many messages in flight) and share one write, or fsync, among them.
func (s *Store) AppendBatchNoWait(msgs []*Message) (int, int64, error) {
	return s.appendBatch(msgs, true)
}

// AppendBatchDeferred is AppendBatchNoWait for a caller that makes the
// records durable itself soon (WriteNow, or WaitDurable, which writes what
// no write has taken): the committer is not woken for them.
func (s *Store) AppendBatchDeferred(msgs []*Message) (int, int64, error) {
	return s.appendBatch(msgs, false)
}

// appendBatch is AppendBatchNoWait; kick wakes the committer to write what
// it appended.
func (s *Store) appendBatch(msgs []*Message, kick bool) (int, int64, error) {
	if f := s.fence.Load(); f != nil {
		return 0, 0, *f
	}
	var sizesBuf [16]int
	sizes := sizesBuf[:0]
	for _, m := range msgs {
		n, err := m.encodedSize(s.opts.MaxMessageSize)
		if err != nil {
			return 0, 0, err
		}
		sizes = append(sizes, n)
	}
	s.mu.Lock()
	if err := s.waitRoomLocked(); err != nil {
		s.mu.Unlock()
		return 0, 0, err
	}
	var (
		done int
		size int
		err  error
	)
	for i, m := range msgs {
		last := s.log.active
		seg, pos, blank, rerr := s.log.reserve(s.writePos, sizes[i])
		if blank > 0 { // the record starts a new segment: seal the last one
			putBlank(s.bufFor(last, s.writePos, headerSize), blank)
			s.cur.sealed = true
			s.writePos = last.end()
		}
		if rerr != nil {
			err = rerr
			break
		}
		next := s.nextOffset[queueKey{m.Topic, m.QueueID}]
		if next == nil {
			next = new(int64)
			s.nextOffset[queueKey{m.Topic, m.QueueID}] = next
		}
		now := s.storeClock()
		if now < s.lastStoreTime {
			now = s.lastStoreTime
		}
		s.lastStoreTime = now
		m.QueueOffset, m.LogOffset, m.StoreTime, m.Size = *next, pos, now, sizes[i]
		m.encode(s.bufFor(seg, pos, sizes[i]))
		*next++
		s.writePos = pos + int64(sizes[i])
		size += sizes[i]
		done++
	}
	end := s.writePos
	s.mu.Unlock()
	if done > 0 {
		s.appendedMsgs.Add(int64(done))
		s.appendedBytes.Add(int64(size))
		if kick {
			s.kickCommit()
		}
	}
	if err != nil {
		if ok, held := s.appendErrors.Allow(); ok {
			s.logger.Error("storage: append failed", "err", err, "failures-not-logged", held)
		}
	}
	return done, end, err
}

// WaitDurable returns once the log is durable up to end under the flush
// policy: on disk with sync flush; written to the segment files (the OS
// has it, a crash of the process cannot lose it) with async flush.
func (s *Store) WaitDurable(ctx context.Context, end int64) error {
	if s.opts.FlushMode == FlushSync {
		if err := s.waitFlushed(ctx, end); err != nil {
			return err
		}
	} else if err := s.waitWritten(ctx, end); err != nil {
		return err
	}
	if g := s.gate.Load(); g != nil {
		return g.g.Wait(ctx, end)
	}
	return nil
}

// WriteNow makes the log durable up to end on the calling goroutine when
// that takes no waiting, and says whether it is: with async flush and no
// ack gate, it writes what is buffered unless a write is under way (that
// write's appends wait for it, and it may not hold end). It never
// blocks on another goroutine: a front-end handling a connection's
// publishes calls it at the end of the burst, and, when it returns
// false, leaves the acknowledgements to a goroutine that waits
// (WaitDurable). The error is the write's. The caller holds no lock that
// a Waker's Wake takes: the watchers of the queues this write makes grow
// are woken on it.
func (s *Store) WriteNow(end int64) (bool, error) {
	if s.opts.FlushMode == FlushSync || s.gate.Load() != nil {
		return false, nil
	}
	if s.written.Load() >= end {
		return true, nil
	}
	if !s.commitMu.TryLock() {
		return false, nil
	}
	if err := s.writeHeld(wakeHere); err != nil {
		return true, err
	}
	return s.written.Load() >= end, nil
}

// WaitSynced returns once the log is on disk up to end, whatever the
// flush policy: for records that must survive a crash of the machine (the
// core's state), it forces an fsync if none is due. It does not wait for
// the ack gate: it speaks of this machine's disk only.
func (s *Store) WaitSynced(ctx context.Context, end int64) error { return s.waitFlushed(ctx, end) }

// SetRetentionGuard has retention call guard with a segment's end before it
// deletes the segment: the guard copies forward what it still needs from
// the log before that offset, and an error keeps the segment (retention
// stops until a later pass).
func (s *Store) SetRetentionGuard(guard func(end int64) error) { s.guard.Store(&guard) }

// SyncFlush reports whether appends are durable only once on disk.
func (s *Store) SyncFlush() bool { return s.opts.FlushMode == FlushSync }

// storeClock is the wall clock in unix nanoseconds read with one clock call
// (the monotonic one) instead of two; the wall base is read again every
// second so that clock steps are followed. Caller holds mu.
func (s *Store) storeClock() int64 {
	since := time.Since(s.clockBase)
	if since < 0 || since > time.Second {
		s.clockBase, since = time.Now(), 0
	}
	return s.clockBase.UnixNano() + int64(since)
}

// Close stops accepting appends, lets the dispatcher finish, flushes the log
// and the indexes, writes a checkpoint and the clean-shutdown marker, and
// releases the directory. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.refuseAppends()
		if err := s.commit(); err != nil {
			s.logger.Error("storage: final write of the log failed", "err", err)
		}
		close(s.stop)
		s.wg.Wait()
		s.wakeEnd()
		err := s.flushLog()
		if err == nil {
			err = s.checkpoint()
		}
		if err == nil && s.dispatched.Load() == s.written.Load() {
			err = saveJSON(filepath.Join(s.dir, "clean"), cleanMarker{End: s.written.Load()})
		}
		if err != nil {
			s.logger.Error("storage: unclean close; the next open recovers", "err", err)
		}
		s.closeErr = err
		s.closeFiles()
	})
	return s.closeErr
}

// refuseAppends has later appends fail with ErrClosed, and those waiting
// for room learn it.
func (s *Store) refuseAppends() {
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	s.mu.Unlock()
}

func (s *Store) closeFiles() {
	s.qmu.Lock()
	for _, q := range s.queues {
		if err := q.close(); err != nil {
			s.logger.Error("storage: index entries not written at close; the next open rebuilds them", "err", err)
		}
	}
	s.qmu.Unlock()
	if s.keys != nil {
		s.keys.close()
	}
	if s.log != nil {
		s.log.close()
	}
	if s.cp != nil {
		s.cp.Close()
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
}

// queue returns the index of (topic, id), opening or creating it when create
// is set; nil if it does not exist and create is not set.
func (s *Store) queue(topic string, id int, create bool) (*queue, error) {
	k := queueKey{topic, id}
	s.qmu.RLock()
	q := s.queues[k]
	s.qmu.RUnlock()
	if q != nil || !create {
		return q, nil
	}
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	if id < 0 || id > maxQueueID {
		return nil, fmt.Errorf("%w: queue id %d, want 0..%d", ErrInvalidMessage, id, maxQueueID)
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if q = s.queues[k]; q != nil {
		return q, nil
	}
	q, err := openQueue(s.queueDir(topic, id), topic, id, s.opts.QueueFileEntries)
	if err != nil {
		return nil, err
	}
	s.queues[k] = q
	return q, nil
}

func (s *Store) queueDir(topic string, id int) string {
	return filepath.Join(s.dir, "index", "queues", topic, fmt.Sprint(id))
}

// allQueues returns a snapshot of the open queues.
func (s *Store) allQueues() []*queue {
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	qs := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	return qs
}
