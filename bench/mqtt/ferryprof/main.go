// Command ferryprof is Ferry's store, core and MQTT front-end in one process
// with net/http/pprof and expvar (memstats) on an HTTP address, for
// profiling the MQTT paths under load. It logs the lines the benchmark
// harness reads: "mqtt: listening listener=tcp addr=…", "pprof listening
// addr=…" and "ferry ready". Defaults are those of ferry serve.
//
//	ferryprof --data-dir DIR [--mqtt-addr 127.0.0.1:0] [--pprof-addr 127.0.0.1:0] [--flush async|sync]
package main

import (
	_ "expvar"
	"flag"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/mqtt"
	"github.com/ferrymq/ferry/storage"
)

func main() {
	dataDir := flag.String("data-dir", "ferry-data", "data directory")
	mqttAddr := flag.String("mqtt-addr", "127.0.0.1:0", "MQTT listen address")
	pprofAddr := flag.String("pprof-addr", "127.0.0.1:0", "pprof and expvar HTTP address")
	flush := flag.String("flush", "async", "sync or async")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *dataDir, *mqttAddr, *pprofAddr, *flush); err != nil {
		log.Error("ferryprof", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, dataDir, mqttAddr, pprofAddr, flush string) error {
	def := config.Default()
	if os.Getenv("GOGC") == "" { // as ferry serve does (cmd/ferry's tuneRuntime)
		debug.SetGCPercent(def.Runtime.GCPercent)
	}
	s, m, c := def.Storage, def.MQTT, def.Core
	st, err := storage.Open(dataDir, storage.Options{
		SegmentSize: s.SegmentSize, MaxMessageSize: s.MaxMessageSize, FlushMode: storage.FlushMode(flush),
		FlushInterval: s.FlushInterval, RetentionAge: s.RetentionAge, RetentionDiskRatio: s.RetentionDiskRatio,
		Logger: log.With("component", "storage"),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	b, err := core.New(st, core.Config{
		AutoCreateTopics: c.AutoCreateTopics, DefaultQueues: c.DefaultQueues, MaxRetries: c.MaxRetries,
		HeartbeatTimeout: c.HeartbeatTimeout, Logger: log.With("component", "core"),
	})
	if err != nil {
		return err
	}
	defer b.Close()
	srv, err := mqtt.New(b, mqtt.Config{
		Addr: mqttAddr, MaxPacketSize: uint32(m.MaxPacketSize), MaxInflight: m.MaxInflight, MaxQueued: m.MaxQueued,
		MaxConnections: m.MaxConnections, ResendInterval: m.ResendInterval, Logger: log.With("component", "mqtt"),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return err
	}
	go http.Serve(ln, nil)
	log.Info("pprof listening", "addr", ln.Addr().String())
	log.Info("ferry ready")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	return nil
}
