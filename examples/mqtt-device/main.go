// Command mqtt-device is a simulated device: it publishes telemetry over
// MQTT with QoS 1 every second, reconnects when the broker goes away, and
// prints the commands it receives on devices/<id>/cmd.
//
//	go run ./examples/mqtt-device --broker tcp://127.0.0.1:1883 --id 42
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://…/mqtt)")
	id := flag.String("id", "42", "device id: it publishes to devices/<id>/telemetry")
	every := flag.Duration("every", time.Second, "time between two readings")
	count := flag.Int("count", 0, "readings to send before exiting (0: until interrupted)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	opts := paho.NewClientOptions().AddBroker(*broker).SetClientID("device-"+*id).
		SetCleanSession(false). // commands sent while it is away wait for it
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(10*time.Second).
		SetWill("devices/"+*id+"/status", "offline", 1, true).
		SetOnConnectHandler(func(c paho.Client) {
			log.Info("connected", "broker", *broker)
			c.Publish("devices/"+*id+"/status", 1, true, "online")
			c.Subscribe("devices/"+*id+"/cmd", 1, func(_ paho.Client, m paho.Message) {
				log.Info("command", "topic", m.Topic(), "body", string(m.Payload()))
			})
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { log.Warn("connection lost; reconnecting", "err", err) })
	c := paho.NewClient(opts)
	c.Connect().Wait()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for n := 1; *count == 0 || n <= *count; n++ {
		reading, _ := json.Marshal(map[string]any{
			"seq": n, "t": 20 + 5*math.Sin(float64(n)/10), "at": time.Now().UTC().Format(time.RFC3339Nano),
		})
		tok := c.Publish("devices/"+*id+"/telemetry", 1, false, reading)
		if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			log.Info("sent", "seq", n)
		} else {
			log.Warn("not acknowledged yet; paho resends it after reconnecting", "seq", n, "err", tok.Error())
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			c.Disconnect(250)
			return
		}
	}
	c.Disconnect(250)
}
