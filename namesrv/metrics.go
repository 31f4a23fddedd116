package namesrv

import "github.com/prometheus/client_golang/prometheus"

var (
	descBrokers     = prometheus.NewDesc("ferry_namesrv_brokers", "Brokers registered with the NameServer now.", nil, nil)
	descTopics      = prometheus.NewDesc("ferry_namesrv_topics", "Topics some registered broker serves.", nil, nil)
	descConnections = prometheus.NewDesc("ferry_namesrv_connections", "Connections to the NameServer open now (brokers and clients).", nil, nil)
	descDropped     = prometheus.NewDesc("ferry_namesrv_brokers_dropped_total",
		"Brokers dropped: silent past the broker timeout (reason=silent) or their connection closed (reason=closed).", []string{"reason"}, nil)
	descRefused = prometheus.NewDesc("ferry_namesrv_refused_total",
		"REGISTER_BROKER and UNREGISTER_BROKER requests refused with NO_PERMISSION, by reason: unsigned, malformed, bad_signature, stale, replay, replay_cache_full (the cluster secret's proof), not_loopback (no secret, a remote peer), conflict (a live broker's name at another address), not_owner (another connection's broker).",
		[]string{"reason"}, nil)
)

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBrokers, descTopics, descConnections, descDropped, descRefused} {
		ch <- d
	}
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(descBrokers, prometheus.GaugeValue, float64(st.Brokers))
	ch <- prometheus.MustNewConstMetric(descTopics, prometheus.GaugeValue, float64(st.Topics))
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedSilent), "silent")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedClosed), "closed")
	for _, r := range refuseReasons {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.Refused[r]), r)
	}
}
