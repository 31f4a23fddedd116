package rabbitmq

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/core"
)

// Bridges are the configured bridges of a process, run and shown together.
type Bridges struct {
	list []*Bridge
}

// NewBridges makes a bridge of each config; names must be unique.
func NewBridges(broker *core.Broker, cfgs []Config, logger *slog.Logger) (*Bridges, error) {
	bs := &Bridges{}
	seen := map[string]bool{}
	for _, c := range cfgs {
		if seen[c.Name] {
			return nil, fmt.Errorf("bridge %q: configured twice", c.Name)
		}
		seen[c.Name] = true
		b, err := New(broker, c, logger)
		if err != nil {
			return nil, err
		}
		bs.list = append(bs.list, b)
	}
	return bs, nil
}

// Start starts every bridge; each connects on its own goroutine.
func (bs *Bridges) Start() {
	for _, b := range bs.list {
		b.Start()
	}
}

// Close stops every bridge.
func (bs *Bridges) Close() error {
	var errs []error
	for _, b := range bs.list {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// Status lists every bridge's status, in configuration order.
func (bs *Bridges) Status() []Status {
	out := make([]Status, 0, len(bs.list))
	for _, b := range bs.list {
		out = append(out, b.Status())
	}
	return out
}

// StatusPath is where the status is served as JSON.
const StatusPath = "/bridges"

// ServeHTTP serves the status as a JSON array.
func (bs *Bridges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(bs.Status()) // a client gone mid-answer: nothing to do
}

var (
	descState      = prometheus.NewDesc("ferry_bridge_state", "1 for the bridge's current state, else 0.", []string{"bridge", "state"}, nil)
	descForwarded  = prometheus.NewDesc("ferry_bridge_forwarded_total", "Messages carried across (confirmed by RabbitMQ, or stored by Ferry).", []string{"bridge", "direction"}, nil)
	descDuplicates = prometheus.NewDesc("ferry_bridge_duplicates_possible_total", "Messages sent again that the other side may already have.", []string{"bridge", "direction"}, nil)
	descDead       = prometheus.NewDesc("ferry_bridge_dead_lettered_total", "Messages nacked or returned by RabbitMQ and set aside in the dead-letter topic.", []string{"bridge"}, nil)
	descLoops      = prometheus.NewDesc("ferry_bridge_loops_dropped_total", "Outbound messages not sent back to the RabbitMQ they came from, or over the hop limit.", []string{"bridge"}, nil)
	descRejected   = prometheus.NewDesc("ferry_bridge_rejected_total", "Inbound messages the store refused (too large), rejected to RabbitMQ.", []string{"bridge"}, nil)
	descReconnects = prometheus.NewDesc("ferry_bridge_reconnects_total", "Connections lost or refused.", []string{"bridge"}, nil)
	descLag        = prometheus.NewDesc("ferry_bridge_lag_messages", "Messages waiting for the bridge: outbound, in the store; inbound, ready in the RabbitMQ queue.", []string{"bridge"}, nil)
	descLastError  = prometheus.NewDesc("ferry_bridge_last_error_timestamp_seconds", "When the bridge last failed (its text is in /bridges).", []string{"bridge"}, nil)
)

// Describe implements prometheus.Collector.
func (bs *Bridges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descForwarded, descDuplicates, descDead, descLoops, descRejected, descReconnects, descLag, descLastError} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the metrics are read from the
// bridges' status at each scrape.
func (bs *Bridges) Collect(ch chan<- prometheus.Metric) {
	for _, s := range bs.Status() {
		for _, st := range States {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s.Name, string(st))
		}
		dir := string(s.Direction)
		ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(s.Forwarded), s.Name, dir)
		ch <- prometheus.MustNewConstMetric(descDuplicates, prometheus.CounterValue, float64(s.DuplicatesPossible), s.Name, dir)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(s.DeadLettered), s.Name)
		ch <- prometheus.MustNewConstMetric(descLoops, prometheus.CounterValue, float64(s.LoopsDropped), s.Name)
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(s.Rejected), s.Name)
		ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(s.Reconnects), s.Name)
		if s.Lag >= 0 {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(s.Lag), s.Name)
		}
		if !s.LastErrorAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastError, prometheus.GaugeValue, float64(s.LastErrorAt.UnixNano())/1e9, s.Name)
		}
	}
}
