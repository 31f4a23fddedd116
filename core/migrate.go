package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Before the state moved into the log, a data directory kept it as JSON
// documents in meta/: the core's "topics", "offsets" and "schedule", and a
// namespace's documents as NAMESPACE-NAME ("mqtt-sessions",
// "cluster-broker"). migrate moves them into the log, once: the core's as
// its records, a namespace's document as the value of key NAME in its
// namespace (its owner reads it from there and converts it if its layout
// changed). Then meta/ is renamed meta.migrated/. A crash in between moves
// the same values again at the next start, which writes nothing new.
func (b *Broker) migrate() error {
	names, err := b.store.MetaNames()
	if err != nil || len(names) == 0 {
		return err
	}
	var changes []stateChange
	put := func(key string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		changes = append(changes, stateChange{key: key, val: raw})
		return nil
	}
	var moved, left []string
	for _, name := range names {
		var doc json.RawMessage
		if _, err := b.store.LoadMeta(name, &doc); err != nil {
			return fmt.Errorf("core: migrate meta/%s.json into the log: %w", name, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, doc); err != nil {
			return fmt.Errorf("core: migrate meta/%s.json into the log: %w", name, err)
		}
		raw := compact.Bytes()
		switch ns, doc, _ := strings.Cut(name, "-"); {
		case name == "topics":
			var topics []TopicConfig
			if err := json.Unmarshal(raw, &topics); err != nil {
				return fmt.Errorf("core: migrate meta/topics.json: %w", err)
			}
			for _, t := range topics {
				if err := put(topicPrefix+t.Name, t); err != nil {
					return err
				}
			}
		case name == "offsets":
			var offsets offsetDoc
			if err := json.Unmarshal(raw, &offsets); err != nil {
				return fmt.Errorf("core: migrate meta/offsets.json: %w", err)
			}
			for owner, m := range offsets {
				if err := put(offsetsPrefix+owner, m); err != nil {
					return err
				}
			}
		case name == "schedule":
			var pos map[string]int64
			if err := json.Unmarshal(raw, &pos); err != nil {
				return fmt.Errorf("core: migrate meta/schedule.json: %w", err)
			}
			for q, off := range pos {
				if i, err := strconv.Atoi(q); err == nil && i >= 0 && i < len(hops) {
					changes = append(changes, schedulePos(i, off))
				}
			}
		case doc != "" && ns != coreNamespace && validNamespace(ns):
			changes = append(changes, stateChange{key: ns + "/" + doc, val: raw})
		default:
			left = append(left, name)
			continue
		}
		moved = append(moved, name)
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].key < changes[j].key })
	if len(changes) > 0 {
		if err := b.state.write(context.Background(), changes, true); err != nil {
			return fmt.Errorf("core: migrate meta/ into the log: %w", err)
		}
	}
	if len(left) > 0 {
		b.logger.Warn("core: meta/ documents of no known owner were not moved into the log", "documents", left)
	}
	if err := b.store.RetireMeta(); err != nil {
		return err
	}
	b.logger.Info("core: moved the broker's state from meta/ into the log; the old files are in meta.migrated/ and may be deleted",
		"documents", moved, "records", len(changes))
	return nil
}

// logIDKey is the state record of the log's identity: message ids carry
// it, so it belongs to the broker's log, and a copy of the log adopts it.
const logIDKey = coreNamespace + "/log-id"

// adoptLogID gives the store the log id its state records, or records the
// store's.
func (b *Broker) adoptLogID() error {
	if raw := b.state.get(logIDKey); raw != nil {
		var id uint64
		if err := json.Unmarshal(raw, &id); err != nil {
			return fmt.Errorf("core: log id: %w", err)
		}
		return b.store.SetLogID(id)
	}
	raw, err := json.Marshal(b.store.LogID())
	if err != nil {
		return err
	}
	return b.state.write(context.Background(), []stateChange{{key: logIDKey, val: raw}}, true)
}
