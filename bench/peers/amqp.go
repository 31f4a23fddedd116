package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// amqpSystems are --amqp-frontend's systems: Ferry's AMQP 0-9-1 listener
// and RabbitMQ, driven by the same amqp091-go load.
const amqpSystems = "ferry-amqp-async,ferry-amqp-sync,rabbit-classic,rabbit-quorum"

// amqpAddrRe finds the AMQP listener's bound address in ferry's log.
var amqpAddrRe = regexp.MustCompile(`msg="amqp: listening" .*addr=(\S+) tls=false`)

// startFerryAMQP runs `ferry serve` with its AMQP listener on a free
// port and declares, over AMQP, a durable queue per topic bound to a
// durable direct exchange, as for RabbitMQ in the same scenario. Each
// exchange is its own core topic, so the latency queue does not read past
// the throughput phase's messages.
func startFerryAMQP(bin, flush string) (target, error) {
	dir, err := os.MkdirTemp("", "bench-peers-ferry-amqp")
	if err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	var addr string
	p, err := startProc(dir, bin, []string{"serve", "--data-dir", filepath.Join(dir, "data"), "--flush", flush,
		"--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtt-ws-addr", "off",
		"--mqtt-tls-addr", "off", "--amqp-addr", "127.0.0.1:0", "--amqp-tls-addr", "off", "--http-addr", "off"}, func(line string) {
		if m := amqpAddrRe.FindStringSubmatch(line); m != nil {
			addr = strings.Trim(m[1], `"`)
		}
		if strings.Contains(line, `msg="ferry ready"`) {
			ready <- addr
		}
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	select {
	case addr = <-ready:
	case <-p.done:
		return nil, fmt.Errorf("ferry exited at start:\n%s", p.tail())
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("ferry: not ready in 30 s")
	}
	if addr == "" {
		p.stop()
		return nil, fmt.Errorf("ferry: no AMQP address in its log:\n%s", p.tail())
	}
	t, err := startAMQP("amqp://guest:guest@"+addr+"/", "classic", true, p)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("ferry amqp: %w", err)
	}
	return t, nil
}
