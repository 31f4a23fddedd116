package client

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/ferrymq/ferry/remoting"
)

// lockMQ is RocketMQ's MessageQueue in LOCK_BATCH_MQ and UNLOCK_BATCH_MQ.
type lockMQ struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

type lockBatchBody struct {
	ConsumerGroup string   `json:"consumerGroup"`
	ClientID      string   `json:"clientId"`
	MQSet         []lockMQ `json:"mqSet"`
}

// lockRequests groups keys by the address of their broker, as lock bodies.
func (c *PushConsumer) lockRequests(ctx context.Context, keys []queueKey) map[string][]lockMQ {
	byAddr := map[string][]lockMQ{}
	for _, k := range keys {
		addr, err := c.brokerAddr(ctx, k)
		if err != nil {
			if c.ctx.Err() == nil {
				c.logger.Warn("client: no broker to lock a queue at", "topic", k.topic, "broker", k.Broker, "queue", k.ID, "err", err)
			}
			continue
		}
		byAddr[addr] = append(byAddr[addr], lockMQ{Topic: k.topic, BrokerName: k.Broker, QueueID: k.ID})
	}
	return byAddr
}

// lock locks (or renews the locks of) keys at their brokers for this
// client. It returns those locked, and those whose broker answered.
func (c *PushConsumer) lock(keys []queueKey) (locked, answered map[queueKey]bool) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.requestTimeout)
	defer cancel()
	locked, answered = map[queueKey]bool{}, map[queueKey]bool{}
	reqs := c.lockRequests(ctx, keys)
	for _, addr := range slices.Sorted(maps.Keys(reqs)) {
		mqs := reqs[addr]
		body, err := json.Marshal(lockBatchBody{ConsumerGroup: c.group, ClientID: c.id, MQSet: mqs})
		if err != nil {
			c.logger.Error("client: lock body", "err", err)
			continue
		}
		resp, err := c.pool.call(ctx, addr, remoting.NewRequest(remoting.LockBatchMQ, nil, body))
		if err == nil {
			var ans struct {
				LockOKMQSet []lockMQ `json:"lockOKMQSet"`
			}
			if err = json.Unmarshal(resp.Body, &ans); err == nil {
				for _, mq := range mqs {
					answered[queueKey{mq.Topic, messageQueue{mq.BrokerName, mq.QueueID}}] = true
				}
				for _, mq := range ans.LockOKMQSet {
					locked[queueKey{mq.Topic, messageQueue{mq.BrokerName, mq.QueueID}}] = true
				}
				continue
			}
		}
		if c.ctx.Err() == nil {
			c.logger.Warn("client: locking queues failed", "broker", addr, "queues", len(mqs), "err", err)
		}
	}
	return locked, answered
}

// unlock releases this client's locks of keys. It runs at Close too, so
// it does not depend on the consumer's context.
func (c *PushConsumer) unlock(keys []queueKey) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.requestTimeout)
	defer cancel()
	for addr, mqs := range c.lockRequests(ctx, keys) {
		body, err := json.Marshal(lockBatchBody{ConsumerGroup: c.group, ClientID: c.id, MQSet: mqs})
		if err == nil {
			_, err = c.pool.call(ctx, addr, remoting.NewRequest(remoting.UnlockBatchMQ, nil, body))
		}
		if err != nil {
			c.logger.Warn("client: unlocking queues failed; their locks expire on their own", "broker", addr, "queues", len(mqs), "err", err)
		}
	}
}

// renewLocks renews the locks of the queues owned. A queue whose broker
// answered that another client holds its lock is stopped at once, without
// a commit: it is no longer this client's to consume.
func (c *PushConsumer) renewLocks() {
	c.mu.Lock()
	keys := slices.Collect(maps.Keys(c.queues))
	c.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	locked, answered := c.lock(keys)
	var lost []*processQueue
	c.mu.Lock()
	for _, k := range keys {
		if answered[k] && !locked[k] {
			if pq := c.queues[k]; pq != nil {
				lost = append(lost, pq)
				delete(c.queues, k)
			}
		}
	}
	c.mu.Unlock()
	for _, pq := range lost {
		c.logger.Warn("client: lost the lock of a queue; stopping it", "topic", pq.key.topic, "broker", pq.key.Broker, "queue", pq.key.ID)
	}
	c.stop(lost, false)
}

// consumeOrderly handles m, one of an ordered queue's messages, on the
// queue's goroutine: a failure retries it in place after the backoff until
// WithMaxRetries retries failed, then it goes to the dead-letter topic.
// False when the queue was dropped first (m is then not done).
func (c *PushConsumer) consumeOrderly(pq *processQueue, m *MessageExt) bool {
	off, logOffset, id, topic, reconsume := m.QueueOffset, m.LogOffset, m.ID, m.Topic, m.ReconsumeTimes // the handler may change m
	handler := pq.sub.handler
	if pq.sub.retry {
		handler = c.handlerOf(topic)
	}
	for {
		if pq.ctx.Err() != nil {
			return false
		}
		select {
		case c.slots <- struct{}{}:
		case <-pq.ctx.Done():
			return false
		}
		m.ReconsumeTimes = reconsume
		err := c.call(handler, m)
		<-c.slots
		if err == nil {
			pq.offsets.done(off)
			return true
		}
		log := c.logger.With("topic", topic, "id", id, "reconsume", reconsume)
		if reconsume < c.opts.maxRetries {
			log.Warn("client: message handler failed; retrying it in place", "in", c.opts.retryBackoff, "err", err)
			if !sleepCtx(pq.ctx, c.opts.retryBackoff) {
				return false
			}
			reconsume++
			continue
		}
		log.Warn("client: message handler failed too many times; moving the message to the dead-letter topic", "err", err)
		for {
			err := c.sendBack(pq, logOffset, id, topic, -1)
			if err == nil {
				pq.offsets.done(off)
				return true
			}
			log.Warn("client: dead-lettering a message failed; retrying", "in", c.opts.retryBackoff, "err", err)
			if !sleepCtx(pq.ctx, c.opts.retryBackoff) {
				return false
			}
		}
	}
}
