package native

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/remoting"
)

// requestLatency is ferry_native_request_duration_seconds: from a request
// read to its answer, by request (requestKinds). A send's time includes
// its wait for durability (the fsync, with sync flush); a pull's includes
// its long-poll suspension while its queue has nothing new, so its
// quantiles say how long consumers wait, not how slow the broker is.
type requestLatency struct {
	vec *prometheus.HistogramVec
	by  [len(requestKinds)]prometheus.Observer
}

func newRequestLatency() *requestLatency {
	l := &requestLatency{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_native_request_duration_seconds",
		Help:    "Native-protocol request handling time, by request; pull_message includes its long-poll wait.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14), // 50 µs … 7.5 s
	}, []string{"request"})}
	for i, k := range requestKinds {
		l.by[i] = l.vec.WithLabelValues(k.name)
	}
	return l
}

// observe records the time since start of req.
func (l *requestLatency) observe(req *remoting.Command, start time.Time) {
	l.by[requestIndex[req.Code]].Observe(time.Since(start).Seconds())
}
