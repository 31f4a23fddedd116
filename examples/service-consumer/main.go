// Command service-consumer is a back-end service: it reads the devices'
// telemetry through a consumer group with Ferry's Go SDK, in order per
// device, and sends a command back to a device that runs hot.
//
//	go run ./examples/service-consumer --namesrv 127.0.0.1:9876
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ferrymq/ferry/client"
)

func main() {
	namesrv := flag.String("namesrv", "127.0.0.1:9876", "NameServer address")
	group := flag.String("group", "telemetry-service", "consumer group: run several to share the load")
	limit := flag.Float64("limit", 24, "temperature above which a device is told to cool down")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	producer, err := client.NewProducer(client.WithNameServers(*namesrv), client.WithLogger(log))
	if err != nil {
		log.Error("producer", "err", err)
		os.Exit(1)
	}
	defer producer.Close()

	consumer, err := client.NewPushConsumer(*group, client.WithNameServers(*namesrv), client.WithOrdered(), client.WithLogger(log))
	if err != nil {
		log.Error("consumer", "err", err)
		os.Exit(1)
	}
	// MQTT devices/<id>/telemetry is topic devices, subject <id>/telemetry.
	err = consumer.Subscribe("devices", "+/telemetry", func(ctx context.Context, m *client.MessageExt) error {
		device, _, _ := strings.Cut(m.Tag, "/")
		var r struct {
			Seq int     `json:"seq"`
			T   float64 `json:"t"`
		}
		if err := json.Unmarshal(m.Body, &r); err != nil {
			log.Warn("not a reading; skipped", "device", device, "err", err)
			return nil
		}
		log.Info("reading", "device", device, "seq", r.Seq, "t", r.T)
		if r.T > *limit {
			// Reaches the device's MQTT subscription to devices/<id>/cmd.
			_, err := producer.Send(ctx, &client.Message{Topic: "devices", Tag: device + "/cmd", Body: []byte("cool-down")})
			return err // a failed send retries the reading later
		}
		return nil
	})
	if err != nil {
		log.Error("subscribe", "err", err)
		os.Exit(1)
	}
	if err := consumer.Start(ctx); err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	<-ctx.Done()
	consumer.Close()
}
