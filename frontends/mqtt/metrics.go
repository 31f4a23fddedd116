package mqtt

import "github.com/prometheus/client_golang/prometheus"

var (
	descConnections = prometheus.NewDesc("ferry_mqtt_connections", "MQTT clients connected now.", nil, nil)
	descSessions    = prometheus.NewDesc("ferry_mqtt_sessions", "Persistent MQTT sessions kept (connected or not).", nil, nil)
	descReceived    = prometheus.NewDesc("ferry_mqtt_received_total", "PUBLISH packets stored in the core.", nil, nil)
	descRefused     = prometheus.NewDesc("ferry_mqtt_refused_total", "PUBLISH packets refused (topic, size, disk full, not allowed).", nil, nil)
	descDelivered   = prometheus.NewDesc("ferry_mqtt_delivered_total", "PUBLISH packets sent to subscribers.", nil, nil)
	descResent      = prometheus.NewDesc("ferry_mqtt_resent_total", "Deliveries sent again for want of an acknowledgement.", nil, nil)
	descDropped     = prometheus.NewDesc("ferry_mqtt_dropped_total", "Messages skipped for offline sessions past mqtt.max-queued.", nil, nil)
	descInflight    = prometheus.NewDesc("ferry_mqtt_inflight", "QoS 1/2 deliveries awaiting acknowledgement.", nil, nil)
	descBytesIn     = prometheus.NewDesc("ferry_mqtt_received_bytes_total", "Bytes read from MQTT clients.", nil, nil)
	descBytesOut    = prometheus.NewDesc("ferry_mqtt_sent_bytes_total", "Bytes written to MQTT clients.", nil, nil)
)

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descSessions, descReceived, descRefused, descDelivered,
		descResent, descDropped, descInflight, descBytesIn, descBytesOut} {
		ch <- d
	}
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
	counter(descRefused, st.Refused)
	counter(descDelivered, st.Delivered)
	counter(descResent, st.Resent)
	counter(descDropped, st.Dropped)
	gauge(descInflight, st.InflightTotal)
	counter(descBytesIn, st.BytesIn)
	counter(descBytesOut, st.BytesOut)
}
