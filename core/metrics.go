package core

import "github.com/prometheus/client_golang/prometheus"

// The core's metrics, computed at each scrape from the store's queue
// offsets, the per-topic byte counters and the groups' state. Every topic
// carries a kind label (TopicKind): "user", or the internal topic's purpose.
var (
	topicLabels = []string{"topic", "kind"}

	descTopicMessages = prometheus.NewDesc("ferry_topic_messages_total",
		"Messages stored in the topic since it was created (the sum of its queues' max offsets).", topicLabels, nil)
	descTopicRetained = prometheus.NewDesc("ferry_topic_retained_messages",
		"Messages of the topic still stored (retention has not deleted them).", topicLabels, nil)
	descTopicBytes = prometheus.NewDesc("ferry_topic_bytes_total",
		"Bytes stored in the topic since the broker started, as the store encodes them.", topicLabels, nil)
	descTopicRate = prometheus.NewDesc("ferry_topic_messages_per_second",
		"Messages stored in the topic per second, over the last second.", topicLabels, nil)
	descTopicQueues = prometheus.NewDesc("ferry_topic_queues", "Queues of the topic.", topicLabels, nil)

	descGroupLag = prometheus.NewDesc("ferry_group_lag_messages",
		"Messages stored and not yet consumed by the group, over all its topics.", []string{"group"}, nil)
	descGroupTopicLag = prometheus.NewDesc("ferry_group_topic_lag_messages",
		"Messages of the topic stored and not yet consumed by the group.", []string{"group", "topic", "kind"}, nil)
	descGroupInflight = prometheus.NewDesc("ferry_group_inflight_messages",
		"Messages delivered to the group's members and not yet acknowledged.", []string{"group"}, nil)
	descGroupMembers = prometheus.NewDesc("ferry_group_members",
		"Members of the group: joined consumers and self-balancing consumer clients.", []string{"group"}, nil)
)

type brokerMetrics struct{ b *Broker }

// NewCollector makes a prometheus.Collector of the broker's topics and
// consumer groups.
func NewCollector(b *Broker) prometheus.Collector { return brokerMetrics{b} }

func (brokerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTopicMessages, descTopicRetained, descTopicBytes, descTopicRate,
		descTopicQueues, descGroupLag, descGroupTopicLag, descGroupInflight, descGroupMembers} {
		ch <- d
	}
}

func (c brokerMetrics) Collect(ch chan<- prometheus.Metric) {
	c.collectTopics(ch)
	c.collectGroups(ch)
}

func (c brokerMetrics) collectTopics(ch chan<- prometheus.Metric) {
	type topicStats struct{ queues, stored, retained int64 }
	topics := map[string]*topicStats{}
	get := func(name string) *topicStats {
		t := topics[name]
		if t == nil {
			t = &topicStats{}
			topics[name] = t
		}
		return t
	}
	for _, q := range c.b.store.Queues() { // every queue with messages, internal ones too
		t := get(q.Topic)
		t.stored += q.Max
		t.retained += q.Max - q.Min
	}
	c.b.topics.mu.RLock()
	for name, tp := range c.b.topics.m { // topics created but never written
		get(name).queues = int64(tp.Queues)
	}
	c.b.topics.mu.RUnlock()
	bytes := c.b.StoredBytes()
	for name, t := range topics {
		kind := TopicKind(name)
		metric := func(d *prometheus.Desc, typ prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, typ, v, name, kind)
		}
		metric(descTopicMessages, prometheus.CounterValue, float64(t.stored))
		metric(descTopicRetained, prometheus.GaugeValue, float64(t.retained))
		metric(descTopicBytes, prometheus.CounterValue, float64(bytes[name]))
		metric(descTopicRate, prometheus.GaugeValue, c.b.rates.rate(name))
		if t.queues > 0 {
			metric(descTopicQueues, prometheus.GaugeValue, float64(t.queues))
		}
	}
}

func (c brokerMetrics) collectGroups(ch chan<- prometheus.Metric) {
	for _, name := range c.b.Groups() {
		info, err := c.b.Group(name)
		if err != nil {
			continue // gone since Groups listed it
		}
		var lag, inflight int64
		byTopic := map[string]int64{}
		for _, q := range info.Queues {
			lag += q.Lag
			inflight += int64(q.InFlight)
			byTopic[q.Topic] += q.Lag
		}
		ch <- prometheus.MustNewConstMetric(descGroupLag, prometheus.GaugeValue, float64(lag), name)
		ch <- prometheus.MustNewConstMetric(descGroupInflight, prometheus.GaugeValue, float64(inflight), name)
		ch <- prometheus.MustNewConstMetric(descGroupMembers, prometheus.GaugeValue, float64(len(info.Members)), name)
		for topic, l := range byTopic {
			ch <- prometheus.MustNewConstMetric(descGroupTopicLag, prometheus.GaugeValue, float64(l), name, topic, TopicKind(topic))
		}
	}
}
