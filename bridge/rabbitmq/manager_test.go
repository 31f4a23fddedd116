package rabbitmq

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStatusAndMetrics shows a bridge that cannot reach its RabbitMQ:
// backing off, with its last error, in the JSON status and the metrics.
func TestStatusAndMetrics(t *testing.T) {
	f := openFerry(t, t.TempDir())
	cfg := bridgeConfig("nowhere", Outbound, "amqp://guest:guest@127.0.0.1:1/", "devices")
	cfg.Timeout = time.Second
	bs, err := NewBridges(f.broker, []Config{cfg}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewBridges(f.broker, []Config{cfg, cfg}, nil); err == nil {
		t.Fatal("two bridges of one name")
	}
	bs.Start()
	t.Cleanup(func() { bs.Close() })
	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return bs.Status()[0].Reconnects > 0 })

	rec := httptest.NewRecorder()
	bs.ServeHTTP(rec, httptest.NewRequest("GET", StatusPath, nil))
	var list []Status
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "nowhere" || list[0].LastError == "" || strings.Contains(list[0].RabbitMQ, "guest") {
		t.Fatalf("status %+v", list)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bs)
	n, err := testutil.GatherAndCount(reg, "ferry_bridge_state", "ferry_bridge_reconnects_total", "ferry_bridge_last_error_timestamp_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(States) + 2; n != want {
		t.Fatalf("%d series, want %d", n, want)
	}
}
