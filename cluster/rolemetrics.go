package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descRole = prometheus.NewDesc("ferry_replication_role",
		"This broker's role in its replicated group (docs/replication.md): 1 for the role it has (master, replica, none).", []string{"role"}, nil)
	descEpoch = prometheus.NewDesc("ferry_replication_epoch",
		"The controllers' epoch of the group, as this broker last heard it.", nil, nil)
	descFenced = prometheus.NewDesc("ferry_replication_fenced",
		"1 while this broker's store refuses writes (a replica, a master whose lease ran out).", nil, nil)
	descRoleEvents = prometheus.NewDesc("ferry_replication_role_changes_total",
		"RoleManager changes of this broker: promotions to master, demotions, lease expiries (writes fenced), heartbeats the controllers did not answer.",
		[]string{"event"}, nil)
)

type roleCollector struct{ r *RoleManager }

// NewRoleCollector exports the role manager's state as metrics.
func NewRoleCollector(r *RoleManager) prometheus.Collector { return roleCollector{r} }

func (roleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descEpoch, descFenced, descRoleEvents} {
		ch <- d
	}
}

func (c roleCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.Status()
	for _, role := range []string{"master", "replica", ""} {
		v := 0.0
		if st.Role == role {
			v = 1
		}
		name := role
		if name == "" {
			name = "none"
		}
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, v, name)
	}
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(st.Group.Epoch))
	fenced := 0.0
	if st.Fenced != "" {
		fenced = 1
	}
	ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, fenced)
	for _, e := range []struct {
		name string
		n    int64
	}{{"promotion", st.Stats.Promotions}, {"demotion", st.Stats.Demotions}, {"lease_expired", st.Stats.LeaseExpiries}, {"heartbeat_error", st.Stats.HeartbeatErrors}} {
		ch <- prometheus.MustNewConstMetric(descRoleEvents, prometheus.CounterValue, float64(e.n), e.name)
	}
}
