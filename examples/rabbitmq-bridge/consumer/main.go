// Command consumer is a RabbitMQ consumer that prints the device telemetry
// a Ferry bridge carries into amq.topic: it binds a queue of its own to
// devices.*.telemetry and prints each message as it arrives.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	key := flag.String("key", "devices.*.telemetry", "binding key on amq.topic")
	flag.Parse()

	conn, err := amqp.Dial(*url)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil) // server-named, gone when we are
	if err != nil {
		log.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, *key, "amq.topic", false, nil); err != nil {
		log.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("waiting for %s on amq.topic (queue %s)\n", *key, q.Name)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				log.Fatal("connection closed")
			}
			fmt.Printf("%s  id=%s subject=%v  %s\n", d.RoutingKey, d.MessageId, d.Headers["x-ferry-subject"], d.Body)
		case <-stop:
			return
		}
	}
}
