package native

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/remoting"
)

// Ordered consumers (RocketMQ's orderly push consumer) lock the queues they
// consume so that no two clients of a group work on one queue, even while a
// rebalance moves it. A lock lasts lockTTL unless renewed (clients renew
// every 20 s).
const lockTTL = 60 * time.Second

// Bounds of the lock table: a request locks at most maxLockSet queues, of
// topics that exist, numbered below maxLockQueue; expired locks are swept
// once the table holds sweepLocks.
const (
	maxLockSet   = 4096
	maxLockQueue = 1024
	sweepLocks   = 16384
)

type lockKey struct {
	group, topic string
	queue        int
}

type lockTable struct {
	mu    sync.Mutex
	locks map[lockKey]lockHolder
}

type lockHolder struct {
	client string
	until  time.Time
}

// messageQueue is RocketMQ's MessageQueue.
type messageQueue struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

type lockBody struct {
	ConsumerGroup string         `json:"consumerGroup"`
	ClientID      string         `json:"clientId"`
	MQSet         []messageQueue `json:"mqSet"`
}

// tryLock locks (or renews) what it can of mqs for client and returns those.
func (t *lockTable) tryLock(group, client string, mqs []messageQueue, now time.Time) []messageQueue {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.locks == nil {
		t.locks = map[lockKey]lockHolder{}
	}
	if len(t.locks) >= sweepLocks {
		for k, h := range t.locks {
			if !now.Before(h.until) {
				delete(t.locks, k)
			}
		}
	}
	var ok []messageQueue
	for _, mq := range mqs {
		k := lockKey{group, mq.Topic, mq.QueueID}
		if h, held := t.locks[k]; held && h.client != client && now.Before(h.until) {
			continue
		}
		t.locks[k] = lockHolder{client: client, until: now.Add(lockTTL)}
		ok = append(ok, mq)
	}
	return ok
}

func (t *lockTable) unlock(group, client string, mqs []messageQueue) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, mq := range mqs {
		k := lockKey{group, mq.Topic, mq.QueueID}
		if h, held := t.locks[k]; held && h.client == client {
			delete(t.locks, k)
		}
	}
}

func (s *Server) lockBatch(user string, req *remoting.Command) *remoting.Command {
	var body lockBody
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return req.Response(remoting.SystemError, "lock body: "+err.Error())
	}
	if refused := s.access.mayGroup(user, req, auth.GroupLock, body.ConsumerGroup); refused != nil {
		return refused
	}
	if len(body.MQSet) > maxLockSet {
		return req.Response(remoting.SystemError, fmt.Sprintf("lock body: %d queues, over the limit of %d a request", len(body.MQSet), maxLockSet))
	}
	if req.Code == remoting.LockBatchMQ { // the table holds only queues that exist
		known := body.MQSet[:0]
		for _, mq := range body.MQSet {
			if mq.QueueID >= 0 && mq.QueueID < maxLockQueue && s.b.HasTopic(mq.Topic) {
				known = append(known, mq)
			}
		}
		body.MQSet = known
	}
	if req.Code == remoting.UnlockBatchMQ {
		s.locks.unlock(body.ConsumerGroup, body.ClientID, body.MQSet)
		return req.Response(remoting.Success, "")
	}
	locked := s.locks.tryLock(body.ConsumerGroup, body.ClientID, body.MQSet, time.Now())
	if locked == nil {
		locked = []messageQueue{}
	}
	return req.JSONResponse(struct {
		LockOKMQSet []messageQueue `json:"lockOKMQSet"`
	}{locked})
}
