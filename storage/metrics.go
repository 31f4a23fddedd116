package storage

import "github.com/prometheus/client_golang/prometheus"

// The store's metrics, read from Stats and Disk at each scrape: the store
// itself keeps plain atomic counters and knows nothing of Prometheus.
var (
	descFlush         = prometheus.NewDesc("ferry_storage_flush_duration_seconds", "Time an fsync round of the commit log took.", nil, nil)
	descAppendedMsgs  = prometheus.NewDesc("ferry_storage_appended_messages_total", "Messages appended to the commit log since start.", nil, nil)
	descAppendedBytes = prometheus.NewDesc("ferry_storage_appended_bytes_total", "Bytes of records appended to the commit log since start.", nil, nil)
	descUnflushed     = prometheus.NewDesc("ferry_storage_unflushed_bytes", "Bytes written to the commit log but not yet fsynced.", nil, nil)
	descUnindexed     = prometheus.NewDesc("ferry_storage_unindexed_bytes", "Bytes written to the commit log but not yet in the queue indexes.", nil, nil)
	descSegments      = prometheus.NewDesc("ferry_storage_segments", "Commit-log segment files.", nil, nil)
	descSegmentBytes  = prometheus.NewDesc("ferry_storage_segment_bytes", "Disk space held by commit-log segments (allocated ahead of the writer).", nil, nil)
	descFSFree        = prometheus.NewDesc("ferry_storage_fs_free_bytes", "Space available on the file system of the data directory.", nil, nil)
	descFSSize        = prometheus.NewDesc("ferry_storage_fs_size_bytes", "Size of the file system of the data directory.", nil, nil)
)

type collector struct{ s *Store }

// NewCollector makes a prometheus.Collector of the store's metrics.
func NewCollector(s *Store) prometheus.Collector { return collector{s} }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFlush, descAppendedMsgs, descAppendedBytes, descUnflushed,
		descUnindexed, descSegments, descSegmentBytes, descFSFree, descFSSize} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	buckets := make(map[float64]uint64, len(FlushBuckets))
	var count uint64
	for i, b := range FlushBuckets {
		count += uint64(st.FlushHistogram[i])
		buckets[b.Seconds()] = count
	}
	count += uint64(st.FlushHistogram[len(FlushBuckets)])
	ch <- prometheus.MustNewConstHistogram(descFlush, count, st.FlushTime.Seconds(), buckets)
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v int64) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v))
	}
	metric(descAppendedMsgs, prometheus.CounterValue, st.AppendedMessages)
	metric(descAppendedBytes, prometheus.CounterValue, st.AppendedBytes)
	metric(descUnflushed, prometheus.GaugeValue, max(0, st.Written-st.Flushed))
	metric(descUnindexed, prometheus.GaugeValue, max(0, st.Written-st.Indexed))
	metric(descSegments, prometheus.GaugeValue, int64(st.Segments))
	d, err := c.s.Disk()
	metric(descSegmentBytes, prometheus.GaugeValue, d.SegmentBytes)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descFSFree, err)
		return
	}
	metric(descFSFree, prometheus.GaugeValue, d.FreeBytes)
	metric(descFSSize, prometheus.GaugeValue, d.SizeBytes)
}
