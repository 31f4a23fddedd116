package core

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/storage"
)

func TestState(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir, testConfig(t))
	mq, err := b.State("mqtt")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.State("amqp")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if ok, err := mq.Load("s/a", &v); ok || err != nil {
		t.Fatalf("load of a key never saved: %v, %v", ok, err)
	}
	if err := mq.Save("s/a", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := mq.Apply(context.Background(),
		Change{Key: "r/devices/+/x", Value: json.RawMessage(`{"b":2}`)},
		Change{Key: "s/gone", Value: 3},
		Change{Key: "s/gone", Delete: true}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := other.Load("s/a", &v); ok {
		t.Fatal("a namespace read another's key")
	}
	for _, bad := range []string{"", "mq-tt", "mqtt/x", "%core", "core", "0123456789012345678901234567890123"} {
		if _, err := b.State(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("namespace %q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("k", maxStateKey)} {
		if err := mq.Save(bad, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("key of %d bytes: %v", len(bad), err)
		}
	}

	// The values outlive a restart, read from the log.
	b.close(t)
	b = openBroker(t, dir, testConfig(t))
	mq, _ = b.State("mqtt")
	if ok, err := mq.Load("s/a", &v); !ok || err != nil || v["a"] != 1 {
		t.Fatalf("s/a after a restart: %v, %v, %v", v, ok, err)
	}
	var keys []string
	if err := mq.Each(func(key string, value json.RawMessage) error {
		keys = append(keys, key+"="+string(value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, " "); got != `r/devices/+/x={"b":2} s/a={"a":1}` {
		t.Fatalf("keys after a restart: %s", got)
	}
}

// A snapshot bounds what a restart replays, and retention never takes the
// records the replay needs: the state outlives the segments it was written
// in.
func TestStateOutlivesRetention(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.FlushInterval = time.Hour // the janitor does not renew: the guard must
	open := func() *testBroker {
		return openBrokerOn(t, dir, cfg, storage.Options{SegmentSize: 1 << 20, MaxMessageSize: 64 << 10,
			RetentionAge: time.Hour, RetentionDiskRatio: 1})
	}
	b := open()
	if _, err := b.CreateTopic("kept", 2); err != nil {
		t.Fatal(err)
	}
	ns, _ := b.State("mqtt")
	const slack = 256
	b.state.mu.Lock()
	b.state.slack = slack
	b.state.mu.Unlock()
	// Many changes of a few keys: snapshots keep the replay short.
	for i := range 3 * slack {
		if err := ns.Apply(context.Background(), Change{Key: "k" + string(rune('a'+i%5)), Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	body := make([]byte, 32<<10)
	for range 200 { // ~6 MiB: several segments
		if _, err := b.Publish(context.Background(), &Message{Topic: "filler", Body: body}, PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the filler indexed", func() bool {
		_, hi := b.store.Offsets("filler", 0)
		return hi > 0 && b.store.Stats().Indexed >= b.store.Stats().Written
	})
	n, err := b.store.ApplyRetention(time.Now().Add(2 * time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments: %v", n, err)
	}
	b.close(t)

	b = open()
	if !b.HasTopic("kept") {
		t.Fatal("topic lost to retention")
	}
	ns, _ = b.State("mqtt")
	for i, want := range []int{3*slack - 5, 3*slack - 4, 3*slack - 3, 3*slack - 2, 3*slack - 1} {
		var got int
		if ok, err := ns.Load("k"+string(rune('a'+(want%5))), &got); !ok || err != nil || got != want {
			t.Errorf("key %d after retention and a restart: %d, %v, %v", i, got, ok, err)
		}
	}
	if live := len(b.state.vals); b.state.tail > 2*live+slack+1 {
		t.Errorf("a restart replayed %d records for %d live keys", b.state.tail, live)
	}
}

// A data directory of the layout before the state moved into the log is
// moved into it on first start.
func TestMigrateMetaDocuments(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.Open(dir, storage.Options{SegmentSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for name, doc := range map[string]any{
		"topics":          []TopicConfig{{Name: "orders", Queues: 4, Created: created}},
		"offsets":         offsetDoc{"billing": {"orders/0": 7, "orders/3": 2}},
		"schedule":        map[string]int64{"4": 12},
		"mqtt-sessions":   map[string]any{"dev1": map[string]any{"id": "dev1"}},
		"cluster-broker":  map[string]string{"name": "broker-x"},
		"stray_document1": 1,
	} {
		if err := st.SaveMeta(name, doc); err != nil {
			t.Fatal(err)
		}
	}
	logID := st.LogID()
	st.Close()

	for range 2 { // the second start finds nothing to move
		b := openBroker(t, dir, testConfig(t))
		if tp, err := b.Topic("orders"); err != nil || tp.Queues != 4 || !tp.Created.Equal(created) {
			t.Fatalf("topic after migration: %+v, %v", tp, err)
		}
		if off, ok := b.savedOffset("billing", "orders/3"); !ok || off != 2 {
			t.Fatalf("offset after migration: %d, %v", off, ok)
		}
		if got := b.state.get(schedulePrefix + "4"); string(got) != "12" {
			t.Fatalf("schedule after migration: %s", got)
		}
		ns, _ := b.State("cluster")
		var id map[string]string
		if ok, err := ns.Load("broker", &id); !ok || err != nil || id["name"] != "broker-x" {
			t.Fatalf("cluster/broker after migration: %v, %v, %v", id, ok, err)
		}
		if b.store.LogID() != logID {
			t.Fatal("the log id changed")
		}
		b.close(t)
		if _, err := os.Stat(filepath.Join(dir, "meta")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("meta/ is still there: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "meta.migrated", "topics.json")); err != nil {
			t.Fatal(err)
		}
	}
}

// The log id is the log's: a copy of the log without the store's own files
// keeps it, so message ids stay the same.
func TestLogIDInTheLog(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir, testConfig(t))
	res, err := b.Publish(context.Background(), &Message{Topic: "t", Body: []byte("x")}, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.MessageID()
	b.close(t)
	if err := os.Remove(filepath.Join(dir, "store.json")); err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, dir, testConfig(t))
	res2, err := b.Publish(context.Background(), &Message{Topic: "t", Body: []byte("y")}, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.LogID != res.LogID {
		t.Fatalf("log id %x became %x", res.LogID, res2.LogID)
	}
	if _, err := b.MessageAt(res.LogOffset); err != nil {
		t.Fatalf("message %s after the copy: %v", id, err)
	}
}

// No front-end reads the state's records.
func TestStateTopicIsTheCores(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	if _, err := b.Read(context.Background(), stateTopic, 0, 0, ReadOptions{}); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("read of the state topic: %v", err)
	}
	if lo, hi := b.Offsets(stateTopic, 0); lo != 0 || hi != 0 {
		t.Fatalf("offsets of the state topic: %d, %d", lo, hi)
	}
	if _, err := b.Publish(context.Background(), &Message{Topic: stateTopic, Body: []byte("x")}, PublishOptions{}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("publish to the state topic: %v", err)
	}
	if _, err := b.MessageAt(0); !errors.Is(err, ErrNotFound) { // the log id record
		t.Fatalf("the state's first record by offset: %v", err)
	}
}

// A self-rebalancing client's commits outlive a restart, each one: the
// core's copy of what the log holds is its own, not the live offsets.
func TestCommittedOffsetsOutliveRestart(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir, testConfig(t))
	for _, off := range []int64{5, 7} {
		if err := b.CommitOffset("books", "ledger", 2, off); err != nil {
			t.Fatal(err)
		}
		if err := b.saveOffsets(); err != nil {
			t.Fatal(err)
		}
	}
	b.close(t)
	b = openBroker(t, dir, testConfig(t))
	if off, ok := b.CommittedOffset("books", "ledger", 2); !ok || off != 7 {
		t.Fatalf("committed offset after a restart: %d, %v; want 7", off, ok)
	}
}

// Once appends go to a new segment, the janitor writes the state into it:
// old segments hold no live state while the disk still has room.
func TestStateRenewsIntoTheNewSegment(t *testing.T) {
	b := openBrokerOn(t, t.TempDir(), testConfig(t), storage.Options{SegmentSize: 1 << 20, MaxMessageSize: 64 << 10})
	st := b.store
	if _, err := b.CreateTopic("kept", 1); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 32<<10)
	for range 100 { // ~3 MiB: several segments
		if _, err := b.Publish(context.Background(), &Message{Topic: "filler", Body: body}, PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the state renewed into the last segment", func() bool {
		b.state.mu.Lock()
		defer b.state.mu.Unlock()
		return b.state.keep >= st.LastSegment()
	})
}
