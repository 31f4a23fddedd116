package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/ferrymq/ferry/storage"
)

// The broker's state — topic definitions, committed offsets, the
// scheduler's positions, the front-ends' state (MQTT sessions, retained
// messages), the broker's identity and the log's — is kept in the commit
// log itself, as records of the internal topic %STATE%: a copy of the log
// byte for byte copies everything the broker knows (docs/core.md, "State in
// the log").
//
// A record's subject is its key ("namespace/key"), its body the value; a
// record with the property STATE_DELETE removes its key. The last record of
// a key wins. Queue 0 holds the records, queue 1 the snapshot marks: now and
// then every live key is written again (a snapshot) and a mark says at which
// queue offset of queue 0 the snapshot begins. At start the state is
// replayed from the last mark on; older records are dead and retention may
// delete them. Before retention deletes a segment holding a record the
// replay needs, the state log writes a new snapshot (the retention guard),
// so retention never takes live state.
const (
	stateTopic   = "%STATE%"
	stateRecords = 0
	stateMarks   = 1
	propDelete   = "STATE_DELETE"

	// maxStateKey bounds a key, namespace included: a record's subject.
	maxStateKey = 32 << 10
	// A snapshot is written when the records since the last one exceed
	// twice the live keys plus snapshotSlack: replay reads at most three
	// times the live state plus the slack, and a small state that changes
	// often (the scheduler's positions) is not copied over and over.
	snapshotSlack = 1 << 16
	// snapshotBatch records are appended at once while snapshotting.
	snapshotBatch = 512
)

// stateMark is the body of a snapshot mark.
type stateMark struct {
	From int64 `json:"from"` // queue offset in stateRecords of the snapshot's first record
	Keys int   `json:"keys"` // how many records the snapshot has
}

// stateChange sets key to val, or removes it.
type stateChange struct {
	key string
	val []byte
	del bool
}

// stateLog is the state kept in the log: its live values in memory, and
// the writer of its records. Writes are serialised by mu, so the log's
// order of state records is the order of the changes.
type stateLog struct {
	store  *storage.Store
	logger *slog.Logger

	mu    sync.Mutex
	vals  map[string][]byte
	next  int64 // queue offset the next record of stateRecords gets
	tail  int   // records since the last snapshot began, the snapshot's included
	slack int   // snapshotSlack; less in tests
	// keep is the log offset of the first record a replay needs (the last
	// snapshot's first record, or its mark): retention must not delete it.
	// MaxInt64 while the log holds no state.
	keep int64
	// follower: the log is a replica's; every write fails (errFollower).
	follower bool
}

// openStateLog replays the state from the log.
func openStateLog(store *storage.Store, logger *slog.Logger) (*stateLog, error) {
	l := &stateLog{store: store, logger: logger, vals: map[string][]byte{}, keep: math.MaxInt64, slack: snapshotSlack}
	lo, hi := store.Offsets(stateTopic, stateRecords)
	from := lo
	if mlo, mhi := store.Offsets(stateTopic, stateMarks); mhi > mlo {
		res, err := store.Read(stateTopic, stateMarks, mhi-1, storage.ReadOptions{MaxCount: 1})
		if err != nil || len(res.Messages) == 0 {
			return nil, fmt.Errorf("core: read the state's last snapshot mark: %v", errOr(err, "none found"))
		}
		var mark stateMark
		if err := json.Unmarshal(res.Messages[0].Body, &mark); err != nil {
			return nil, fmt.Errorf("%w: state snapshot mark at log offset %d: %v", storage.ErrCorrupt, res.Messages[0].LogOffset, err)
		}
		l.keep = res.Messages[0].LogOffset
		if mark.From < lo {
			// Retention never deletes past the guard; only a damaged or
			// hand-trimmed log gets here.
			logger.Error("core: the state's last snapshot is no longer in the log; rebuilding the state from what is left",
				"snapshot-from", mark.From, "first-record", lo)
		} else {
			from = mark.From
		}
	}
	l.next = hi
	for off := from; off < hi; {
		res, err := store.Read(stateTopic, stateRecords, off, storage.ReadOptions{MaxCount: 1024})
		if err != nil {
			return nil, fmt.Errorf("core: replay the state at record %d: %w", off, err)
		}
		if len(res.Messages) == 0 {
			break
		}
		for i := range res.Messages {
			m := &res.Messages[i]
			l.keep = min(l.keep, m.LogOffset)
			l.apply(stateChange{key: m.Subject, val: bytes.Clone(m.Body), del: m.Properties.Get(propDelete) != ""})
			l.tail++
		}
		off = res.Next
	}
	return l, nil
}

func errOr(err error, why string) any {
	if err != nil {
		return err
	}
	return why
}

func (l *stateLog) apply(c stateChange) {
	if c.del {
		delete(l.vals, c.key)
	} else {
		l.vals[c.key] = c.val
	}
}

// get returns key's value, nil if none.
func (l *stateLog) get(key string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.vals[key]
}

// each calls fn with every key under prefix and its value, in key order.
func (l *stateLog) each(prefix string, fn func(key string, val []byte) error) error {
	l.mu.Lock()
	keys := make([]string, 0)
	for k := range l.vals {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	vals := make([][]byte, len(keys))
	sort.Strings(keys)
	for i, k := range keys {
		vals[i] = l.vals[k]
	}
	l.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// write appends changes and applies them, and returns once they are
// durable: on disk when synced, else under the flush policy. Changes that
// set a key to the value it has are skipped.
func (l *stateLog) write(ctx context.Context, changes []stateChange, synced bool) error {
	if l.follower {
		return errFollower
	}
	l.mu.Lock()
	msgs := make([]*storage.Message, 0, len(changes))
	kept := changes[:0:0]
	var batch map[string]stateChange // the batch's last change of each key so far
	for _, c := range changes {
		if len(c.key) == 0 || len(c.key) > maxStateKey {
			l.mu.Unlock()
			return fmt.Errorf("%w: state key of %d bytes, want 1..%d", ErrInvalidName, len(c.key), maxStateKey)
		}
		old, ok := l.vals[c.key]
		if prev, in := batch[c.key]; in {
			old, ok = prev.val, !prev.del
		}
		if c.del && !ok || !c.del && ok && bytes.Equal(old, c.val) {
			continue
		}
		if len(changes) > 1 {
			if batch == nil {
				batch = make(map[string]stateChange, len(changes))
			}
			batch[c.key] = c
		}
		msgs = append(msgs, stateRecord(c))
		kept = append(kept, c)
	}
	if len(msgs) == 0 {
		l.mu.Unlock()
		return nil
	}
	n, end, err := l.append(msgs)
	for _, c := range kept[:n] {
		l.apply(c)
	}
	if err == nil {
		end = l.maybeSnapshotLocked(end)
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("core: write state: %w", err)
	}
	if synced {
		err = l.store.WaitSynced(ctx, end)
	} else {
		err = l.store.WaitDurable(ctx, end)
	}
	if err != nil {
		return fmt.Errorf("core: write state: %w", err)
	}
	return nil
}

// maybeSnapshotLocked writes a snapshot when the records since the last
// one are many more than the live keys, and returns the log's end after
// what it wrote (end when nothing). Caller holds mu.
func (l *stateLog) maybeSnapshotLocked(end int64) int64 {
	if l.tail <= 2*len(l.vals)+l.slack {
		return end
	}
	at, err := l.snapshotLocked()
	if err != nil {
		l.logger.Error("core: writing a snapshot of the state failed; the next change tries again", "err", err)
		return end
	}
	return at
}

// appendWith appends msgs and then the state change c, as one append: the
// change records what the messages did (the scheduler's position after it
// moved a message), so that a restart neither repeats nor skips it. It
// returns how many of msgs were stored and the end of the append; c is
// applied only when all were. The caller waits for durability.
func (l *stateLog) appendWith(msgs []*storage.Message, c stateChange) (int, int64, error) {
	if l.follower {
		return 0, 0, errFollower
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := stateRecord(c)
	all := append(msgs[:len(msgs):len(msgs)], rec)
	n, end, err := l.store.AppendBatchNoWait(all)
	if n == len(all) {
		l.apply(c)
		l.keep = min(l.keep, rec.LogOffset)
		l.next = rec.QueueOffset + 1
		l.tail++
		end = l.maybeSnapshotLocked(end)
	}
	return min(n, len(msgs)), end, err
}

// append appends records of stateRecords. Caller holds mu.
func (l *stateLog) append(msgs []*storage.Message) (int, int64, error) {
	n, end, err := l.store.AppendBatchNoWait(msgs)
	if n > 0 {
		l.keep = min(l.keep, msgs[0].LogOffset)
		l.next = msgs[n-1].QueueOffset + 1
		l.tail += n
	}
	return n, end, err
}

func stateRecord(c stateChange) *storage.Message {
	m := &storage.Message{Topic: stateTopic, QueueID: stateRecords, Subject: c.key, Body: c.val}
	if c.del {
		m.Properties = storage.Properties{{Name: propDelete, Value: "1"}}
	}
	return m
}

// snapshotLocked writes every live key again, then the mark that makes the
// replay start at the first of them. It returns where the mark ends in the
// log. Caller holds mu.
func (l *stateLog) snapshotLocked() (int64, error) {
	keys := make([]string, 0, len(l.vals))
	for k := range l.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	from := l.next
	first := int64(math.MaxInt64)
	for len(keys) > 0 {
		batch := keys[:min(len(keys), snapshotBatch)]
		keys = keys[len(batch):]
		msgs := make([]*storage.Message, len(batch))
		for i, k := range batch {
			msgs[i] = stateRecord(stateChange{key: k, val: l.vals[k]})
		}
		n, _, err := l.store.AppendBatchNoWait(msgs)
		if n > 0 {
			first = min(first, msgs[0].LogOffset)
			l.next = msgs[n-1].QueueOffset + 1
		}
		if err != nil {
			return 0, err
		}
	}
	body, err := json.Marshal(stateMark{From: from, Keys: len(l.vals)})
	if err != nil {
		return 0, err
	}
	mark := &storage.Message{Topic: stateTopic, QueueID: stateMarks, Body: body}
	if _, _, err := l.store.AppendBatchNoWait([]*storage.Message{mark}); err != nil {
		return 0, err
	}
	l.keep = min(first, mark.LogOffset)
	l.tail = len(l.vals)
	return mark.LogOffset + int64(mark.Size), nil
}

// renew writes a snapshot when the replay needs a record older than the
// segment appends go to: once per segment at most, while the disk still
// has room, so that retention rarely finds state in the segment it is
// about to delete (the guard then has nothing to write, which on a full
// disk it might not manage).
func (l *stateLog) renew() error {
	if _, err := l.snapshotBefore(l.store.LastSegment()); err != nil {
		return fmt.Errorf("core: snapshot the state into the new segment: %w", err)
	}
	return nil
}

// guard is the store's retention guard: before a segment ending at end is
// deleted, a snapshot is written (and synced) if the replay still needs a
// record in it.
func (l *stateLog) guard(end int64) error {
	wrote, err := l.snapshotBefore(end)
	if err != nil {
		return fmt.Errorf("core: snapshot the state before retention: %w", err)
	}
	if wrote {
		l.logger.Info("core: wrote a snapshot of the state before retention deletes its old records", "segment-end", end)
	}
	return nil
}

// snapshotBefore writes a snapshot, and waits until it is on disk, when the
// replay needs a record before log offset off. It reports whether it wrote
// one.
func (l *stateLog) snapshotBefore(off int64) (bool, error) {
	if l.follower {
		return false, nil
	}
	l.mu.Lock()
	if l.keep >= off {
		l.mu.Unlock()
		return false, nil
	}
	at, err := l.snapshotLocked()
	l.mu.Unlock()
	if err != nil {
		return false, err
	}
	return true, l.store.WaitSynced(context.Background(), at)
}

// isStateTopic reports whether topic is the state's.
func isStateTopic(topic string) bool { return topic == stateTopic }

// isInternalTopic reports whether topic is one of the core's own (the
// state's, the half messages', replication's epoch history %EPOCH%), which
// no reader reaches.
func isInternalTopic(topic string) bool {
	return isStateTopic(topic) || IsHalfTopic(topic) || topic == "%EPOCH%"
}
