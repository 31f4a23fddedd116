package controller

import "github.com/prometheus/client_golang/prometheus"

var (
	descLeader = prometheus.NewDesc("ferry_controller_leader",
		"1 while this controller is the Raft leader and acts as such (elects masters), else 0.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("ferry_controller_leader_changes_total",
		"Times this controller became the acting leader.", nil, nil)
	descElections = prometheus.NewDesc("ferry_controller_elections_total",
		"Masters this controller elected while leading, by kind: clean (from the in-sync set) or unclean (controller.unclean-election).", []string{"kind"}, nil)
	descGroups = prometheus.NewDesc("ferry_controller_groups",
		"Broker groups in the replicated state.", nil, nil)
	descMasterless = prometheus.NewDesc("ferry_controller_groups_without_master",
		"Groups whose master is silent past controller.master-timeout with no broker allowed to replace it (leader only; 0 elsewhere).", nil, nil)
	descRefused = prometheus.NewDesc("ferry_controller_refused_total",
		"Requests refused with NO_PERMISSION, by reason: unsigned, malformed, bad_signature, stale, replay, replay_cache_full (the cluster secret's proof), not_loopback (no secret, a remote peer).",
		[]string{"reason"}, nil)
)

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descLeaderChanges, descElections, descGroups, descMasterless, descRefused} {
		ch <- d
	}
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	var groups int
	s.fsm.read(func(st *state) { groups = len(st.Groups) })
	s.mu.Lock()
	leading, st := s.leading, s.stats
	s.mu.Unlock()
	leader := 0.0
	if leading {
		leader = 1
	} else {
		st.masterless = 0
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(st.leaderChanges))
	ch <- prometheus.MustNewConstMetric(descElections, prometheus.CounterValue, float64(st.elections), "clean")
	ch <- prometheus.MustNewConstMetric(descElections, prometheus.CounterValue, float64(st.electionsUnclean), "unclean")
	ch <- prometheus.MustNewConstMetric(descGroups, prometheus.GaugeValue, float64(groups))
	ch <- prometheus.MustNewConstMetric(descMasterless, prometheus.GaugeValue, float64(st.masterless))
	for i, r := range refuseReasons {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.refused[i]), r)
	}
}
