package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/storage"
)

func TestAppGraph(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	if err := fx.ValidateApp(brokerOptions(config.Default(), logger)); err != nil {
		t.Fatalf("ferry broker's fx graph: %v", err)
	}
	if err := fx.ValidateApp(namesrvOptions(config.Default(), logger)); err != nil {
		t.Fatalf("ferry namesrv's fx graph: %v", err)
	}
	if err := fx.ValidateApp(appOptions(config.Default(), logger)); err != nil {
		t.Fatal(err)
	}
	replicated := config.Default()
	replicated.Controller.Addrs, replicated.Broker.Name = "127.0.0.1:9878", "group-a"
	if err := fx.ValidateApp(brokerOptions(replicated, logger)); err != nil {
		t.Fatalf("a replicated ferry broker's fx graph: %v", err)
	}
	if err := fx.ValidateApp(servingHalfOptions(replicated, logger, &storage.Store{}, prometheus.NewRegistry(), nil, nil, 1)...); err != nil {
		t.Fatalf("a replicated broker's serving half: %v", err)
	}
	withBridge := config.Default()
	withBridge.Bridges = []config.BridgeConfig{{Name: "b", Direction: "outbound", URL: "amqp://127.0.0.1:5672/", Topic: "devices"}}
	if err := fx.ValidateApp(appOptions(withBridge, logger)); err != nil {
		t.Fatalf("ferry serve's fx graph with a bridge: %v", err)
	}
}

// TestDefaultsMatchStorage guards the copy of the store's defaults that
// config keeps (so that --help shows them and config needs no storage import).
func TestDefaultsMatchStorage(t *testing.T) {
	got := config.Default().Storage
	want := config.StorageConfig{
		SegmentSize:        storage.DefaultSegmentSize,
		MaxMessageSize:     storage.DefaultMaxMessageSize,
		Flush:              string(storage.FlushAsync),
		FlushInterval:      storage.DefaultFlushInterval,
		RetentionAge:       storage.DefaultRetentionAge,
		RetentionDiskRatio: storage.DefaultRetentionRatio,
	}
	if got != want {
		t.Fatalf("config defaults %+v\nstorage defaults %+v", got, want)
	}
}

func TestStorageParams(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = "/var/lib/ferry"
	cfg.Storage.Flush = "sync"
	p := storageParams(cfg, slog.New(slog.DiscardHandler))
	if p.Dir != "/var/lib/ferry" || p.Options.FlushMode != storage.FlushSync ||
		p.Options.SegmentSize != cfg.Storage.SegmentSize || p.Options.Logger == nil {
		t.Fatalf("storageParams = %+v", p)
	}
}

func TestServeHelpListsFlags(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"serve", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{
		"--config", "--data-dir", "--http-addr", "--segment-size", "--max-message-size", "--flush ",
		"--flush-interval", "--retention-age", "--retention-disk-ratio", "--log-format", "--log-level",
		"FERRY_STORAGE_SEGMENT_SIZE",
	} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("serve --help lacks %q:\n%s", flag, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "ferry ") {
		t.Fatalf("version printed %q", out.String())
	}
}
