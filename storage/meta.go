package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferrymq/ferry/internal/atomicfile"
)

// Small metadata (the store's identity) is kept in JSON documents written
// atomically: a temporary file, fsync, rename over the old one, fsync of the
// directory. A reader sees the old document or the new one, never a
// half-written one; the checksum catches what the disk gets wrong.
//
// The documents in meta/ are the layout before the core kept its state in
// the log: the core reads them once (MetaNames, LoadMeta) to move them into
// the log, then retires the directory (RetireMeta).

type envelope struct {
	CRC32C uint32          `json:"crc32c"`
	Data   json.RawMessage `json:"data"`
}

// SaveMeta stores v as the metadata document name (letters, digits, '-',
// '_', '.'), atomically.
func (s *Store) SaveMeta(name string, v any) error {
	if err := metaName(name); err != nil {
		return err
	}
	return saveJSON(filepath.Join(s.metaDir(), name+".json"), v)
}

// LoadMeta reads the metadata document name into v. It reports false when
// there is none.
func (s *Store) LoadMeta(name string, v any) (bool, error) {
	if err := metaName(name); err != nil {
		return false, err
	}
	return loadJSON(filepath.Join(s.metaDir(), name+".json"), v)
}

// MetaNames lists the documents in meta/, by name; none when there is no
// meta/ (a store created since the state moved into the log, or one
// already migrated).
func (s *Store) MetaNames() ([]string, error) {
	ents, err := os.ReadDir(s.metaDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	var names []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && metaName(name) == nil {
			names = append(names, name)
		}
	}
	return names, nil
}

// RetireMeta renames meta/ to meta.migrated/ (kept for the operator to
// delete), once its documents are in the log.
func (s *Store) RetireMeta() error {
	to := filepath.Join(s.dir, "meta.migrated")
	if err := os.RemoveAll(to); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := os.Rename(s.metaDir(), to); err != nil {
		return fmt.Errorf("storage: retire meta/: %w", err)
	}
	return atomicfile.SyncDir(s.dir)
}

func (s *Store) metaDir() string { return filepath.Join(s.dir, "meta") }

func metaName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("storage: metadata name %q: want 1..128 characters", name)
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("storage: metadata name %q: %q is not allowed", name, c)
		}
	}
	return nil
}

func saveJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("storage: encode %s: %w", filepath.Base(path), err)
	}
	doc, err := json.MarshalIndent(envelope{CRC32C: crc32.Checksum(data, castagnoli), Data: data}, "", "  ")
	if err != nil {
		return fmt.Errorf("storage: encode %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, append(doc, '\n'))
}

func loadJSON(path string, v any) (bool, error) {
	doc, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	var env envelope
	if err := json.Unmarshal(doc, &env); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	// Checksum the compact form: the file holds it indented.
	compact, err := json.Marshal(env.Data)
	if err != nil || crc32.Checksum(compact, castagnoli) != env.CRC32C {
		return false, fmt.Errorf("%w: %s: checksum mismatch", ErrCorrupt, path)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return false, fmt.Errorf("storage: decode %s: %w", path, err)
	}
	return true, nil
}

// writeFileAtomic replaces path with data: tmp, fsync, rename, fsync dir.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("storage: write %s: %w", path, err)
	}
	return nil
}
