package controller

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// collectorFilter is the one series of a Server's metrics named name (and
// with label as its only label's value, when set), for testutil.ToFloat64.
type collectorFilter struct {
	s     *Server
	name  string
	label string
}

func (f *collectorFilter) Describe(ch chan<- *prometheus.Desc) { f.s.Describe(ch) }

func (f *collectorFilter) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { f.s.Collect(all); close(all) }()
	for m := range all {
		var pb dto.Metric
		if m.Write(&pb) != nil {
			continue
		}
		if !strings.Contains(m.Desc().String(), `"`+f.name+`"`) {
			continue
		}
		if f.label != "" && (len(pb.Label) != 1 || pb.Label[0].GetValue() != f.label) {
			continue
		}
		ch <- m
	}
}
