package mqtt

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/core"
)

// The hops of a message published over MQTT on its way to a subscriber,
// timed by ferry_mqtt_delivery_hop_seconds so that a slow tail can be
// pinned on one of them:
//
//   - stored: from the PUBLISH read by the front-end (the message's born
//     time) to its append to the store (its store time);
//   - pulled: from the append to the subscriber's feed holding it: the
//     write to the log, indexing, the wake-up and the core group's pull;
//   - written: from the pull to the write of the PUBLISH to the
//     subscriber's connection returning.
//
// ferry_mqtt_publish_duration_seconds times the publisher's side: read to
// acknowledged.
const (
	hopStored = iota
	hopPulled
	hopWritten
	numHops
)

var hopNames = [numHops]string{"stored", "pulled", "written"}

// hopTimer holds the histograms of the hops.
type hopTimer struct {
	vec  *prometheus.HistogramVec
	hist [numHops]prometheus.Observer
}

func newHopTimer() *hopTimer {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_mqtt_delivery_hop_seconds",
		Help: "Time a message published over MQTT spent on each hop to a subscriber's connection: stored (PUBLISH read → appended), pulled (appended → the subscriber's feed has it), written (→ written to the connection).",
		// 20 µs … 2.7 s, 1.5× apart: fine enough to read a p99 off.
		Buckets: prometheus.ExponentialBuckets(20e-6, 1.5, 30),
	}, []string{"hop"})
	h := &hopTimer{vec: vec}
	for i, n := range hopNames {
		h.hist[i] = vec.WithLabelValues(n)
	}
	return h
}

// pulled records the first two hops of the deliveries of one pull, which
// returned at now. Only messages published over MQTT (to this broker's
// clock) are timed.
func (h *hopTimer) pulled(ds []*core.Delivery, now int64) {
	for _, d := range ds {
		if d.BornTime == 0 || d.Attempt > 1 || d.Properties.Get(propClient) == "" {
			continue
		}
		h.hist[hopStored].Observe(float64(d.StoreTime-d.BornTime) / 1e9)
		h.hist[hopPulled].Observe(float64(now-d.StoreTime) / 1e9)
	}
}

// written records the last hop of n deliveries pulled at pulled.
func (h *hopTimer) written(n int, pulled int64) {
	if n == 0 {
		return
	}
	d := float64(time.Now().UnixNano()-pulled) / 1e9
	for range n {
		h.hist[hopWritten].Observe(d)
	}
}
