package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	o := testOptions(t)
	o.FlushMode = FlushSync
	s := openTest(t, t.TempDir(), o)
	msgs := []*Message{{Topic: "t", Body: []byte("a")}, {Topic: "t", Body: []byte("bc")}, {Topic: "u", Body: []byte("def")}}
	if _, err := s.AppendBatch(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, m := range msgs {
		size += m.Size
	}

	st := s.Stats()
	var rounds int64
	for _, n := range st.FlushHistogram {
		rounds += n
	}
	if st.Flushes == 0 || rounds != st.Flushes {
		t.Errorf("%d flushes, %d in the histogram: want as many, and at least one (sync append)", st.Flushes, rounds)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s))
	want := fmt.Sprintf(`
# HELP ferry_storage_appended_bytes_total Bytes of records appended to the commit log since start.
# TYPE ferry_storage_appended_bytes_total counter
ferry_storage_appended_bytes_total %d
# HELP ferry_storage_appended_messages_total Messages appended to the commit log since start.
# TYPE ferry_storage_appended_messages_total counter
ferry_storage_appended_messages_total 3
# HELP ferry_storage_segments Commit-log segment files.
# TYPE ferry_storage_segments gauge
ferry_storage_segments 1
# HELP ferry_storage_unflushed_bytes Bytes written to the commit log but not yet fsynced.
# TYPE ferry_storage_unflushed_bytes gauge
ferry_storage_unflushed_bytes 0
`, size)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ferry_storage_appended_bytes_total",
		"ferry_storage_appended_messages_total", "ferry_storage_segments", "ferry_storage_unflushed_bytes"); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"ferry_storage_flush_duration_seconds", "ferry_storage_segment_bytes",
		"ferry_storage_fs_free_bytes", "ferry_storage_fs_size_bytes", "ferry_storage_unindexed_bytes"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series, err %v; want 1", name, n, err)
		}
	}
	d, err := s.Disk()
	if err != nil || d.SegmentBytes < int64(size) || d.SizeBytes <= 0 || d.FreeBytes > d.SizeBytes {
		t.Errorf("Disk() = %+v, %v", d, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
