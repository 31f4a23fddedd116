package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// cleanMarker is written by Close after everything is flushed; Open removes
// it. Its presence says the log ends exactly at End and needs no scan.
type cleanMarker struct {
	End int64 `json:"end"`
}

// recover brings the log and the indexes into agreement before any append:
//
//  1. The checkpoint says up to where the indexes are durable; without a
//     valid one the indexes are rebuilt from the start of the log.
//  2. After a clean shutdown the log ends where the marker says. After a
//     crash, the log is scanned from the checkpoint, every record framed and
//     checksummed; at the first bad one the rest is cut off and reported.
//  3. Index entries past the checkpoint are dropped and rebuilt from the log.
//     An index that disagrees with the log is rebuilt whole.
func (s *Store) recover(created bool) error {
	var clean cleanMarker
	wasClean, err := loadJSON(filepath.Join(s.dir, "clean"), &clean)
	if err != nil {
		s.logger.Warn("storage: unreadable clean-shutdown marker; recovering as after a crash", "err", err)
		wasClean = false
	}
	if created && s.log.minOffset() == 0 && s.log.segments()[0].allocated.Load() == 0 {
		wasClean, clean.End = true, 0 // a new store: nothing to check
	}
	for attempt := 0; ; attempt++ {
		rebuilt, err := s.recoverOnce(wasClean, clean.End, attempt > 0)
		if err != nil || !rebuilt {
			if err == nil {
				err = s.clearCleanMarker()
			}
			return err
		}
		if attempt > 0 {
			return errors.New("storage: indexes still disagree with the log after a rebuild")
		}
	}
}

// recoverOnce returns true when it found the indexes in doubt and they must
// be rebuilt from scratch (it then calls again with rebuild set).
func (s *Store) recoverOnce(wasClean bool, cleanEnd int64, rebuild bool) (bool, error) {
	indexDir := filepath.Join(s.dir, "index")
	cp, cpData, cpOK, err := openCheckpoint(indexDir)
	if err != nil {
		return false, err
	}
	s.cp = cp
	logMin := s.log.minOffset()
	switch {
	case rebuild:
	case !cpOK:
		if !wasClean || cleanEnd > 0 {
			s.logger.Warn("storage: no valid index checkpoint; rebuilding the indexes from the log")
		}
		rebuild = true
	case cpData.perFile != s.opts.QueueFileEntries:
		s.logger.Warn("storage: queue file size changed; rebuilding the indexes from the log",
			"was", cpData.perFile, "now", s.opts.QueueFileEntries)
		rebuild = true
	case cpData.offset < logMin:
		rebuild = true
	}
	start := cpData.offset
	if rebuild {
		start = logMin
		for _, sub := range []string{"queues", "keys"} {
			if err := os.RemoveAll(filepath.Join(indexDir, sub)); err != nil {
				return false, fmt.Errorf("storage: %w", err)
			}
		}
	}

	end := cleanEnd
	if !wasClean || cleanEnd < start {
		if end, err = s.scanTail(start); err != nil {
			return false, err
		}
	}
	if start > end {
		s.logger.Warn("storage: index checkpoint is past the end of the log; rebuilding the indexes")
		return true, s.resetIndexes()
	}

	if s.keys, err = openKeyIndex(filepath.Join(indexDir, "keys")); err != nil {
		return false, err
	}
	if err := s.keys.truncate(start); err != nil {
		return false, err
	}
	if err := s.openQueues(); errors.Is(err, errIndexDamaged) && !rebuild {
		s.logger.Warn("storage: rebuilding the indexes", "err", err)
		return true, s.resetIndexes()
	} else if err != nil {
		return false, err
	}
	if n := len(s.allQueues()); !rebuild && n < cpData.queues {
		s.logger.Warn("storage: queue indexes missing; rebuilding the indexes", "found", n, "checkpoint", cpData.queues)
		return true, s.resetIndexes()
	}
	for _, q := range s.allQueues() {
		if err := s.truncateQueue(q, start); err != nil {
			return false, err
		}
	}

	s.writePos = end
	s.written.Store(end)
	s.flushed = end
	s.dispatched.Store(start)
	s.recovering = true
	defer func() { s.recovering = false }()
	if err := s.dispatch(end); errors.Is(err, errIndexGap) {
		s.logger.Warn("storage: index has a gap; rebuilding the indexes", "err", err)
		return true, s.resetIndexes()
	} else if err != nil {
		return false, err
	}
	if doubt := s.checkQueues(); doubt != "" {
		s.logger.Warn("storage: index disagrees with the log; rebuilding the indexes", "detail", doubt)
		return true, s.resetIndexes()
	}
	for _, q := range s.allQueues() {
		next := q.max.Load()
		s.nextOffset[queueKey{q.topic, q.id}] = &next
		if err := s.trimQueue(q, logMin); err != nil {
			return false, err
		}
	}
	if start < end {
		s.logger.Info("storage: rebuilt index entries from the log", "from", start, "to", end)
	}
	return false, s.checkpoint()
}

// resetIndexes closes the indexes so that recovery can start over.
func (s *Store) resetIndexes() error {
	s.qmu.Lock()
	for k, q := range s.queues {
		q.close() // an error does not matter: the indexes are rebuilt
		delete(s.queues, k)
	}
	s.qmu.Unlock()
	clear(s.pend)
	clear(s.keyPend)
	if s.keys != nil {
		s.keys.close()
		s.keys = nil
	}
	s.cp.Close()
	return nil
}

func (s *Store) clearCleanMarker() error {
	err := os.Remove(filepath.Join(s.dir, "clean"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: %w", err)
	}
	return syncDir(s.dir)
}

// openQueues opens every consume queue found under index/queues.
func (s *Store) openQueues() error {
	root := filepath.Join(s.dir, "index", "queues")
	topics, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	for _, t := range topics {
		if !t.IsDir() || validTopic(t.Name()) != nil {
			continue
		}
		ids, err := os.ReadDir(filepath.Join(root, t.Name()))
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		for _, d := range ids {
			id, err := strconv.Atoi(d.Name())
			if err != nil || !d.IsDir() || id < 0 || id > maxQueueID || strconv.Itoa(id) != d.Name() {
				continue
			}
			if _, err := s.queue(t.Name(), id, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// truncateQueue drops q's entries for log offsets at or past off.
func (s *Store) truncateQueue(q *queue, off int64) error {
	i, err := s.searchQueue(q, func(e entry) bool { return e.logOffset >= off })
	if err != nil {
		return err
	}
	if i < q.max.Load() {
		return q.truncate(i)
	}
	return nil
}

// trimQueue moves q's minimum past entries whose records were deleted.
func (s *Store) trimQueue(q *queue, logMin int64) error {
	i, err := s.searchQueue(q, func(e entry) bool { return e.logOffset >= logMin })
	if err != nil {
		return err
	}
	return q.trimBefore(i)
}

// searchQueue returns the first index in [min, max) whose entry satisfies f,
// which must be monotone in the index (holes are skipped forward); max if none.
func (s *Store) searchQueue(q *queue, f func(entry) bool) (int64, error) {
	lo, hi := q.min.Load(), q.max.Load()
	var ferr error
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, err := q.entryAt(mid)
		if err != nil {
			ferr = err
			break
		}
		for j := mid + 1; e.size == 0 && j < hi; j++ { // a hole: look at the next entry
			if e, err = q.entryAt(j); err != nil {
				return 0, err
			}
		}
		if e.size == 0 || f(e) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, ferr
}

// checkQueues compares each queue's last entry with the record it points at;
// it returns what disagrees, or "".
func (s *Store) checkQueues() string {
	written := s.written.Load()
	for _, q := range s.allQueues() {
		max := q.max.Load()
		if max == q.min.Load() {
			continue
		}
		e, err := q.entryAt(max - 1)
		if err != nil {
			return err.Error()
		}
		rec, err := s.log.read(e.logOffset, written)
		if err != nil {
			return fmt.Sprintf("%s/%d entry %d: %v", q.topic, q.id, max-1, err)
		}
		be := binary.BigEndian
		tlen := int(rec[fixedSize])
		if len(rec) != int(e.size) || int(be.Uint32(rec[16:])) != q.id || int64(be.Uint64(rec[20:])) != max-1 ||
			recordFieldsOff+tlen > len(rec) || string(rec[recordFieldsOff:recordFieldsOff+tlen]) != q.topic {
			return fmt.Sprintf("%s/%d entry %d points at another record (log offset %d)", q.topic, q.id, max-1, e.logOffset)
		}
	}
	return ""
}

// scanTail frames and checksums every record from start to the end of the
// log, cuts the log at the first bad one, and returns the end.
func (s *Store) scanTail(start int64) (int64, error) {
	off, records := start, 0
	var reason string
	for {
		seg := s.log.find(off)
		if seg == nil {
			segs := s.log.segments()
			if last := segs[len(segs)-1]; off == last.end() {
				// The last segment was sealed and its successor never made.
				if _, err := s.log.roll(off); err != nil {
					return 0, err
				}
				continue
			}
			reason = fmt.Sprintf("no segment holds log offset %d", off)
			break
		}
		rel := off - seg.base
		kind, size, why := frame(seg.readable(rel, seg.end()), int(seg.cap-rel), s.log.limit)
		if kind == frameRecord && int64(binary.BigEndian.Uint64(seg.data[rel+28:])) != off {
			kind, why = frameBad, fmt.Sprintf("record says it is at log offset %d", binary.BigEndian.Uint64(seg.data[rel+28:]))
		}
		isLast := s.log.isLast(seg)
		switch {
		case kind == frameRecord:
			off += int64(size)
			records++
			continue
		case kind == frameBlank, kind == frameEnd && !isLast && seg.cap-rel < headerSize:
			off = seg.end()
			continue
		case kind == frameEnd && isLast:
		case kind == frameEnd:
			reason = fmt.Sprintf("sealed segment %s ends early, at log offset %d", seg.path, off)
		default:
			reason = why
		}
		break
	}
	lost, err := s.cutLog(off)
	if err != nil {
		return 0, err
	}
	if reason != "" || lost > 0 {
		s.logger.Warn("storage: cut a torn or corrupt log tail after a crash",
			"offset", off, "bytes_lost", lost, "reason", reason, "records_checked", records, "from", start)
	} else {
		s.logger.Info("storage: log tail checked after a crash", "from", start, "end", off, "records", records)
	}
	return off, nil
}

// cutLog makes off the end of the log: it zeroes what follows in its segment,
// deletes later segments, and fsyncs. It returns how many bytes it removed.
func (s *Store) cutLog(off int64) (int64, error) {
	seg := s.log.find(off)
	if seg == nil {
		return 0, nil
	}
	var lost int64
	for _, later := range s.log.segments() {
		if later.base > seg.base {
			lost += later.allocated.Load()
		}
	}
	if err := s.log.dropBack(seg.end()); err != nil {
		return 0, err
	}
	tail := seg.readable(off-seg.base, seg.end())
	last := int64(len(tail))
	for last > 0 && tail[last-1] == 0 {
		last--
	}
	lost += last
	if last > 0 {
		from := off - seg.base
		if err := writeZeros(seg.f, from, from+last); err != nil {
			return 0, fmt.Errorf("storage: cut the log at %d: %w", off, err)
		}
		if err := seg.sync(); err != nil {
			return 0, err
		}
	}
	return lost, nil
}
