package mqtt

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descConnections = prometheus.NewDesc("ferry_mqtt_connections", "MQTT clients connected now.", nil, nil)
	descSessions    = prometheus.NewDesc("ferry_mqtt_sessions", "Persistent MQTT sessions kept (connected or not).", nil, nil)
	descReceived    = prometheus.NewDesc("ferry_mqtt_received_total", "PUBLISH packets stored in the core.", nil, nil)
	descRefused     = prometheus.NewDesc("ferry_mqtt_refused_total", "PUBLISH packets refused, by cause: acl (not allowed), topic (over the limits, or not mapped), reserved ('$'), size, disk (full), other.", []string{"cause"}, nil)
	descDelivered   = prometheus.NewDesc("ferry_mqtt_delivered_total", "PUBLISH packets sent to subscribers.", nil, nil)
	descResent      = prometheus.NewDesc("ferry_mqtt_resent_total", "Deliveries sent again for want of an acknowledgement.", nil, nil)
	descDropped     = prometheus.NewDesc("ferry_mqtt_dropped_total", "Messages skipped for offline sessions past mqtt.max-queued.", nil, nil)
	descExpired     = prometheus.NewDesc("ferry_mqtt_expired_total", "Deliveries not sent because the message's MQTT 5 Message Expiry Interval had passed.", nil, nil)
	descInflight    = prometheus.NewDesc("ferry_mqtt_inflight", "QoS 1/2 deliveries awaiting acknowledgement.", nil, nil)
	descBytesIn     = prometheus.NewDesc("ferry_mqtt_received_bytes_total", "Bytes read from MQTT clients.", nil, nil)
	descBytesOut    = prometheus.NewDesc("ferry_mqtt_sent_bytes_total", "Bytes written to MQTT clients.", nil, nil)

	descLimitHits   = prometheus.NewDesc("ferry_mqtt_limit_hits_total", "Packets or connections refused at a limit, by its key (mqtt.connect-timeout, mqtt.max-connect-size, mqtt.max-packet-size, mqtt.max-topic-levels, mqtt.max-topic-length).", []string{"limit"}, nil)
	descConnRefused = prometheus.NewDesc("ferry_mqtt_refused_connections_total", "Connections refused because their listener was at mqtt.max-connections.", []string{"listener"}, nil)
	descOpen        = prometheus.NewDesc("ferry_mqtt_open_connections", "Connections open on a listener, logged in or not.", []string{"listener"}, nil)
	descAcceptErrs  = prometheus.NewDesc("ferry_mqtt_accept_errors_total", "Temporary errors accepting connections (out of file descriptors, say), retried with a back-off.", []string{"listener"}, nil)
	descListenerUp  = prometheus.NewDesc("ferry_mqtt_listener_up", "1 while a listener accepts connections, 0 while it cannot.", []string{"listener"}, nil)
)

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descSessions, descReceived, descRefused, descDelivered,
		descResent, descDropped, descExpired, descInflight, descBytesIn, descBytesOut,
		descLimitHits, descConnRefused, descOpen, descAcceptErrs, descListenerUp} {
		ch <- d
	}
	s.publishLatency.Describe(ch)
	s.hops.vec.Describe(ch)
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descConnections, st.Connections)
	gauge(descSessions, st.Sessions)
	counter(descReceived, st.Received)
	for c := range numCauses {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(s.refusedBy[c].Load()), causeNames[c])
	}
	s.publishLatency.Collect(ch)
	s.hops.vec.Collect(ch)
	counter(descDelivered, st.Delivered)
	counter(descResent, st.Resent)
	counter(descDropped, st.Dropped)
	counter(descExpired, st.Expired)
	gauge(descInflight, st.InflightTotal)
	counter(descBytesIn, st.BytesIn)
	counter(descBytesOut, st.BytesOut)
	for k, c := range s.hits {
		ch <- prometheus.MustNewConstMetric(descLimitHits, prometheus.CounterValue, float64(c.Load()), k)
	}
	s.mu.Lock()
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	for _, l := range ls {
		ch <- prometheus.MustNewConstMetric(descConnRefused, prometheus.CounterValue, float64(l.refused.Load()), l.id)
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(l.open.Load()), l.id)
		ch <- prometheus.MustNewConstMetric(descAcceptErrs, prometheus.CounterValue, float64(l.acceptErrors.Load()), l.id)
		up := 1.0
		if l.health() != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descListenerUp, prometheus.GaugeValue, up, l.id)
	}
}
