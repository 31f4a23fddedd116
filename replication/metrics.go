package replication

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descLag       = prometheus.NewDesc("ferry_replication_lag_bytes", "Bytes a replica trails its master's log end by.", []string{"replica"}, nil)
	descLagTime   = prometheus.NewDesc("ferry_replication_lag_seconds", "Time since a replica last had everything its master had (0 when caught up).", []string{"replica"}, nil)
	descAcked     = prometheus.NewDesc("ferry_replication_acked_offset", "Log end a replica has acknowledged as durable.", []string{"replica"}, nil)
	descInSync    = prometheus.NewDesc("ferry_replication_in_sync", "1 when the replica is in the controller-approved in-sync set.", []string{"replica"}, nil)
	descConnected = prometheus.NewDesc("ferry_replication_connected", "1 when the replica is connected to its master.", []string{"replica"}, nil)
)

// NewCollector exports the replication lag of what status returns at each
// scrape: the master's Replicas(), or a replica's own Status(), whichever
// role the broker has now (nil: nothing).
func NewCollector(status func() []ReplicaStatus) prometheus.Collector { return collector{status} }

type collector struct{ status func() []ReplicaStatus }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descLagTime, descAcked, descInSync, descConnected} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	if c.status == nil {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, st := range c.status() {
		id := strconv.FormatInt(st.ID, 10)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(st.Lag), id)
		ch <- prometheus.MustNewConstMetric(descLagTime, prometheus.GaugeValue, st.LagTime.Seconds(), id)
		ch <- prometheus.MustNewConstMetric(descAcked, prometheus.GaugeValue, float64(st.Acked), id)
		ch <- prometheus.MustNewConstMetric(descInSync, prometheus.GaugeValue, b(st.InSync), id)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b(st.Connected), id)
	}
}
