package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/ferrymq/ferry/internal/rawio"
)

// keyIndex maps message keys to log offsets: one file per commit-log segment,
// named like it, of 16-byte entries (key hash, log offset) in log order. It is
// derived data, written by the dispatcher and rebuilt from the log; a lookup
// scans it newest first and checks each hit against the record.
type keyIndex struct {
	dir string

	mu    sync.Mutex // guards files and sizes
	files map[int64]*os.File
	sizes map[int64]int64

	pending unsynced // what sync must make durable
}

const keyEntrySize = 16

func openKeyIndex(dir string) (*keyIndex, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	k := &keyIndex{dir: dir, files: map[int64]*os.File{}, sizes: map[int64]int64{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	for _, e := range ents {
		base, ok := parseSegmentName(e.Name())
		if !ok {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0o644)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("storage: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			k.close()
			return nil, fmt.Errorf("storage: %w", err)
		}
		k.files[base] = f
		k.sizes[base] = st.Size() / keyEntrySize * keyEntrySize
	}
	return k, nil
}

// append adds encoded entries b to the file of the segment at base. Only
// whoever indexes (Store.dispatchMu).
func (k *keyIndex) append(base int64, b []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f := k.files[base]
	if f == nil {
		var err error
		if f, err = os.OpenFile(filepath.Join(k.dir, segmentName(base)), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		k.files[base] = f
		k.pending.mark(-1, true)
	}
	if _, err := rawio.WriteAt(f, b, k.sizes[base]); err != nil {
		return fmt.Errorf("storage: write key index: %w", err)
	}
	k.sizes[base] += int64(len(b))
	k.pending.mark(base, false)
	return nil
}

// truncate drops entries for log offsets at or past off (recovery).
func (k *keyIndex) truncate(off int64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var buf [keyEntrySize]byte
	for base, f := range k.files {
		n := k.sizes[base] / keyEntrySize
		i := sort.Search(int(n), func(i int) bool {
			if _, err := f.ReadAt(buf[:], int64(i)*keyEntrySize); err != nil {
				return true
			}
			return int64(binary.BigEndian.Uint64(buf[8:])) >= off
		})
		if int64(i) == n {
			continue
		}
		if err := f.Truncate(int64(i) * keyEntrySize); err != nil {
			return fmt.Errorf("storage: truncate key index: %w", err)
		}
		k.sizes[base] = int64(i) * keyEntrySize
		k.pending.mark(base, false)
	}
	return nil
}

// lookup returns the log offsets whose key hash is h, newest first, at most max.
func (k *keyIndex) lookup(h uint64, max int) ([]int64, error) {
	k.mu.Lock()
	bases := make([]int64, 0, len(k.files))
	for base := range k.files {
		bases = append(bases, base)
	}
	k.mu.Unlock()
	sort.Slice(bases, func(i, j int) bool { return bases[i] > bases[j] })
	var out []int64
	buf := make([]byte, 4096*keyEntrySize)
	for _, base := range bases {
		k.mu.Lock()
		f, size := k.files[base], k.sizes[base]
		k.mu.Unlock()
		if f == nil {
			continue
		}
		var hits []int64
		for pos := int64(0); pos < size; pos += int64(len(buf)) {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return out, fmt.Errorf("storage: read key index: %w", err)
			}
			for p := 0; p+keyEntrySize <= n; p += keyEntrySize {
				if binary.BigEndian.Uint64(buf[p:]) == h {
					hits = append(hits, int64(binary.BigEndian.Uint64(buf[p+8:])))
				}
			}
		}
		for i := len(hits) - 1; i >= 0 && len(out) < max; i-- {
			out = append(out, hits[i])
		}
		if len(out) >= max {
			break
		}
	}
	return out, nil
}

// drop deletes the file of the segment at base (retention).
func (k *keyIndex) drop(base int64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	f := k.files[base]
	if f == nil {
		return nil
	}
	f.Close()
	delete(k.files, base)
	delete(k.sizes, base)
	k.pending.mark(-1, true)
	if err := os.Remove(filepath.Join(k.dir, segmentName(base))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// sync fsyncs the files written since the last call, and the directory
// when a file was made or removed. It holds k.mu only to look a file up:
// the indexer, which takes k.mu to append, does not wait for the disk.
func (k *keyIndex) sync() error {
	starts, dir := k.pending.take()
	var err error
	for base := range starts {
		k.mu.Lock()
		f := k.files[base] // nil: dropped since
		k.mu.Unlock()
		if f != nil {
			if e := rawio.Sync(f); e != nil && !errors.Is(e, os.ErrClosed) { // closed: dropped meanwhile
				err = fmt.Errorf("storage: sync key index: %w", e)
				break
			}
		}
		delete(starts, base)
	}
	if err == nil && dir {
		if err = syncDir(k.dir); err == nil {
			dir = false
		}
	}
	if err != nil { // what is left, for the next sync
		k.pending.restore(starts, dir)
	}
	return err
}

func (k *keyIndex) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for base, f := range k.files {
		f.Close()
		delete(k.files, base)
	}
}
