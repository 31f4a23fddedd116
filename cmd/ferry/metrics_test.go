package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/monitor"
	"github.com/ferrymq/ferry/namesrv"
)

// TestMetricsEndpoint starts ferry serve's graph in-process on free ports,
// with a bridge whose RabbitMQ is not there and a consumer group, sends a
// message through the native protocol and checks that /metrics has every
// component's metrics.
func TestMetricsEndpoint(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.NamesrvAddr, cfg.Native.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.MQTT.Addr, cfg.MQTT.WSAddr, cfg.MQTT.TLSAddr = "127.0.0.1:0", "off", "off"
	cfg.AMQP.Addr = "127.0.0.1:0"
	cfg.Bridges = []config.BridgeConfig{{Name: "away", Direction: "outbound", URL: "amqp://127.0.0.1:1/", Topic: "metrics"}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mon *monitor.Server
	var ns *namesrv.Server
	var broker *core.Broker
	app := fx.New(appOptions(cfg, logger), fx.Populate(&mon, &ns, &broker))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := app.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})

	m, err := broker.Join("g", "m1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: "metrics"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Leave()
	waitRoute(t, ns.Addr(), "TBW102") // the broker has registered: new topics can be sent to
	p, err := client.NewProducer(client.WithNameServers(ns.Addr()), client.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send(ctx, &client.Message{Topic: "metrics", Body: []byte("hello")}); err != nil {
		t.Fatal(err)
	}

	base := "http://" + mon.Addr()
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d once started", code)
	}
	// The store indexes the message moments after the send returns: the
	// topic's offsets, and so its metrics, follow then.
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var code int
		code, text = httpGet(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d\n%s", code, text)
		}
		if strings.Contains(text, `ferry_topic_messages_total{kind="user",topic="metrics"} 1`) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		"ferry_storage_flush_duration_seconds_bucket{",
		"ferry_storage_appended_messages_total ",
		"ferry_storage_fs_free_bytes ",
		`ferry_topic_messages_total{kind="user",topic="metrics"} 1`,
		`ferry_topic_bytes_total{kind="user",topic="metrics"} `,
		`ferry_group_lag_messages{group="g"} 1`,
		"ferry_native_connections ",
		`ferry_native_requests_total{request="send_message_v2"} `,
		"ferry_namesrv_brokers 1",
		"ferry_mqtt_connections 0",
		`ferry_bridge_state{bridge="away",`,
		"go_goroutines ",
	} {
		if !strings.Contains(text, "\n"+want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
