package cluster

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descInfo = prometheus.NewDesc("ferry_cluster_broker_info",
		"The broker's identity at the NameServers (docs/cluster.md); always 1.", []string{"cluster", "broker", "id", "role"}, nil)
	descRegistrations = prometheus.NewDesc("ferry_cluster_registrations_total",
		"REGISTER_BROKER requests to NameServers, by result: ok, refused (NO_PERMISSION: another secret, a live broker's name), failed (unreachable, timed out, other errors).",
		[]string{"result"}, nil)
	descRegistered = prometheus.NewDesc("ferry_cluster_namesrvs_registered",
		"NameServers whose latest registration of this broker was accepted.", nil, nil)
	descNameServers = prometheus.NewDesc("ferry_cluster_namesrvs",
		"NameServers this broker registers with.", nil, nil)
)

// Describe and Collect make the Registrar a prometheus.Collector.
func (r *Registrar) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descRegistrations, descRegistered, descNameServers} {
		ch <- d
	}
}

func (r *Registrar) Collect(ch chan<- prometheus.Metric) {
	id := r.opts.Identity
	st := r.Stats()
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, id.Cluster, id.Name, strconv.FormatInt(id.ID, 10), id.Role())
	ch <- prometheus.MustNewConstMetric(descRegistrations, prometheus.CounterValue, float64(st.OK), "ok")
	ch <- prometheus.MustNewConstMetric(descRegistrations, prometheus.CounterValue, float64(st.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(descRegistrations, prometheus.CounterValue, float64(st.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, float64(st.Registered))
	ch <- prometheus.MustNewConstMetric(descNameServers, prometheus.GaugeValue, float64(st.NameServers))
}
