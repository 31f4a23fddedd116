package mqtt

import (
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// cause is why a PUBLISH was refused, as ferry_mqtt_refused_total counts
// it.
type cause int

const (
	causeACL      cause = iota // the ACL does not let the user write the topic
	causeTopic                 // over the topic limits, or no core topic it maps onto
	causeReserved              // a topic starting with '$'
	causeSize                  // larger than the core takes
	causeDisk                  // the store is full
	causeOther                 // any other error of the core
	numCauses
)

var causeNames = [numCauses]string{"acl", "topic", "reserved", "size", "disk", "other"}

// causeOf is the cause of a refusal answered with code.
func causeOf(code packets.Code) cause {
	switch code.Code {
	case packets.ErrPacketTooLarge.Code:
		return causeSize
	case packets.ErrQuotaExceeded.Code:
		return causeDisk
	case packets.ErrTopicNameInvalid.Code:
		return causeTopic
	}
	return causeOther
}

// countRefusal counts a refused PUBLISH.
func (s *Server) countRefusal(c cause) {
	s.refusedBy[c].Add(1)
}

// refusedTotal is the number of PUBLISH packets refused, of every cause.
func (s *Server) refusedTotal() int64 {
	var n int64
	for c := range numCauses {
		n += s.refusedBy[c].Load()
	}
	return n
}

// newPublishLatency is ferry_mqtt_publish_duration_seconds: from a
// PUBLISH read to its message stored in the core, and for QoS 1 to its
// PUBACK written (after the write, or with sync flush the fsync, that made
// it durable).
func newPublishLatency() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ferry_mqtt_publish_duration_seconds",
		Help:    "Time from a PUBLISH that passed the ACL and topic checks to its message stored in the core (QoS 1: to its PUBACK written), or refused by it.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12), // 50 µs … 1.2 s
	})
}

// observePublish records the time since start of a PUBLISH.
func (s *Server) observePublish(start time.Time) {
	s.publishLatency.Observe(time.Since(start).Seconds())
}
