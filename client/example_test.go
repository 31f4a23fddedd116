package client_test

import (
	"context"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/client"
)

func ExampleProducer() {
	p, err := client.NewProducer(client.WithNameServers("127.0.0.1:9876"), client.WithGroup("billing"))
	if err != nil {
		slog.Error("producer", "err", err)
		return
	}
	defer p.Close()
	ctx := context.Background()

	// Synchronously: returns once the broker stored the message.
	res, err := p.Send(ctx, &client.Message{
		Topic: "orders",
		Tag:   "eu/paris",
		Keys:  []string{"order-1042"},
		Body:  []byte(`{"total": 42}`),
		// Messages with the same sharding key go to the same queue, in order.
		ShardingKey: "customer-7",
	})
	if err != nil {
		slog.Error("send", "err", err)
		return
	}
	slog.Info("stored", "id", res.MsgID, "queue", res.QueueID, "offset", res.QueueOffset)

	// Delivered in 10 seconds (delay level 3), or at a given time.
	p.Send(ctx, &client.Message{Topic: "orders", Body: []byte("reminder"), DelayLevel: 3})
	p.Send(ctx, &client.Message{Topic: "orders", Body: []byte("later"), DeliverAt: time.Now().Add(2 * time.Hour)})

	// In the background, or without waiting for the broker at all.
	p.SendAsync(ctx, &client.Message{Topic: "orders", Body: []byte("async")}, func(res client.SendResult, err error) {
		if err != nil {
			slog.Error("async send", "err", err)
		}
	})
	p.SendOneway(ctx, &client.Message{Topic: "metrics", Body: []byte("cpu=0.4")})

	// Several messages, stored together in one queue.
	p.SendBatch(ctx, []*client.Message{
		{Topic: "orders", Body: []byte("a")},
		{Topic: "orders", Body: []byte("b")},
	})
}

func ExamplePushConsumer() {
	c, err := client.NewPushConsumer("billing-workers",
		client.WithNameServers("127.0.0.1:9876"),
		client.WithConsumeFrom(client.ConsumeFromFirst),
		client.WithConcurrency(8))
	if err != nil {
		slog.Error("consumer", "err", err)
		return
	}
	err = c.Subscribe("orders", "eu/+ || us/+", func(ctx context.Context, m *client.MessageExt) error {
		slog.Info("order", "tag", m.Tag, "attempt", m.ReconsumeTimes+1, "body", m.Body)
		return nil // an error, or a panic, redelivers the message later
	})
	if err != nil {
		slog.Error("subscribe", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := c.Start(ctx); err != nil {
		slog.Error("start", "err", err)
		return
	}
	<-ctx.Done()
	// Commits the offsets and leaves the group: the other members take
	// this one's queues over.
	if err := c.Close(); err != nil {
		slog.Error("close", "err", err)
	}
}
