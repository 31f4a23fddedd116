package main

import (
	"fmt"
	"regexp"
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
	p, addr, err := startServe(bin, flush, amqpAddrRe, "--amqp-addr", "127.0.0.1:0", "--amqp-tls-addr", "off")
	if err != nil {
		return nil, err
	}
	t, err := startAMQP("amqp://guest:guest@"+addr+"/", "classic", true, p)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("ferry amqp: %w", err)
	}
	return t, nil
}
