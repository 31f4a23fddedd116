package namesrv

import "github.com/prometheus/client_golang/prometheus"

var (
	descBrokers     = prometheus.NewDesc("ferry_namesrv_brokers", "Brokers registered with the NameServer now.", nil, nil)
	descTopics      = prometheus.NewDesc("ferry_namesrv_topics", "Topics some registered broker serves.", nil, nil)
	descConnections = prometheus.NewDesc("ferry_namesrv_connections", "Connections to the NameServer open now (brokers and clients).", nil, nil)
	descRefused     = prometheus.NewDesc("ferry_namesrv_connections_refused_total",
		"Connections to the NameServer closed as soon as accepted: over namesrv-max-connections.", nil, nil)
	descLimitCloses = prometheus.NewDesc("ferry_namesrv_connections_closed_total",
		"Connections to the NameServer closed by a limit (docs/native.md, Limits), by limit.", []string{"limit"}, nil)
	descAcceptErrs = prometheus.NewDesc("ferry_namesrv_accept_errors_total",
		"Failed accepts on the NameServer's listener (out of file descriptors, say), each retried.", nil, nil)
	descDropped = prometheus.NewDesc("ferry_namesrv_brokers_dropped_total",
		"Brokers dropped: silent past the broker timeout (reason=silent) or their connection closed (reason=closed).", []string{"reason"}, nil)
	descRefusedRequests = prometheus.NewDesc("ferry_namesrv_refused_total",
		"REGISTER_BROKER and UNREGISTER_BROKER requests refused with NO_PERMISSION, by reason: unsigned, malformed, bad_signature, stale, replay, replay_cache_full (the cluster secret's proof), not_loopback (no secret, a remote peer), conflict (a live broker's name at another address), not_owner (another connection's broker).",
		[]string{"reason"}, nil)
)

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBrokers, descTopics, descConnections, descRefused, descLimitCloses, descAcceptErrs, descDropped, descRefusedRequests} {
		ch <- d
	}
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(descBrokers, prometheus.GaugeValue, float64(st.Brokers))
	ch <- prometheus.MustNewConstMetric(descTopics, prometheus.GaugeValue, float64(st.Topics))
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(st.Connections))
	conns := s.srv.Stats()
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(conns.Refused))
	for _, l := range conns.LimitCloses() {
		ch <- prometheus.MustNewConstMetric(descLimitCloses, prometheus.CounterValue, float64(l.N), l.Limit)
	}
	ch <- prometheus.MustNewConstMetric(descAcceptErrs, prometheus.CounterValue, float64(conns.AcceptErrors))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedSilent), "silent")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedClosed), "closed")
	for _, r := range refuseReasons {
		ch <- prometheus.MustNewConstMetric(descRefusedRequests, prometheus.CounterValue, float64(st.Refused[r]), r)
	}
}
