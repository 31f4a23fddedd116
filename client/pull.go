package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// ErrOffsetMoved: a pull asked for an offset out of the queue's range (its
// messages were deleted, or it is past the end). PullResult.Next is where
// to pull from instead.
var ErrOffsetMoved = errors.New("client: offset out of the queue's range")

// Queue is one queue of a topic on one broker.
type Queue struct {
	Topic  string
	Broker string // the broker's name
	ID     int
}

// PullResult is what a pull found.
type PullResult struct {
	Messages []*MessageExt
	// Next is the offset to pull from next.
	Next int64
	// Min and Max are the queue's oldest offset and the offset after its
	// newest message.
	Min, Max int64
}

// PullConsumer reads the queues it is told to at the offsets it is told
// to: the caller picks the queues and keeps track of offsets, which it may
// commit to the broker for the group (CommitOffset) and read back
// (CommittedOffset). It does not join the group's rebalancing. Its methods
// are safe for concurrent use.
type PullConsumer struct {
	group  string
	opts   options
	pool   *pool // everything but pulls
	pulls  *pool // long-polling pulls
	routes *routes

	mu     sync.Mutex
	closed bool
	once   sync.Once
	err    error
}

// NewPullConsumer makes a pull consumer of group. Of the consumer options,
// those about pulling apply (WithNameServers, WithLogger); WithOrdered and
// WithBroadcasting do not.
func NewPullConsumer(group string, opts ...Option) (*PullConsumer, error) {
	o := buildOptions(opts)
	if err := o.check("consumer"); err != nil {
		return nil, err
	}
	if o.ordered || o.broadcasting {
		return nil, fmt.Errorf("%w: WithOrdered and WithBroadcasting do not apply to a pull consumer", ErrInvalidOption)
	}
	if err := validTopic(retryPrefix + group); err != nil || group == "" || strings.HasPrefix(group, "%") {
		return nil, fmt.Errorf("%w: consumer group %q: letters, digits, '_', '-', '|', at most %d characters",
			ErrInvalidOption, group, maxTopicLen-len(retryPrefix))
	}
	pl := newPool(&o)
	c := &PullConsumer{group: group, opts: o, pool: pl, pulls: newPool(&o), routes: newRoutes(&o, pl, false)}
	c.routes.start()
	return c, nil
}

// Close closes the consumer's connections; calls in flight fail.
func (c *PullConsumer) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.routes.close()
		c.err = errors.Join(c.pool.close(), c.pulls.close())
	})
	return c.err
}

func (c *PullConsumer) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Queues lists topic's readable queues, sorted by broker name and id.
func (c *PullConsumer) Queues(ctx context.Context, topic string) ([]Queue, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	rt, err := c.routes.get(ctx, topic)
	if err != nil {
		return nil, err
	}
	qs := make([]Queue, len(rt.read))
	for i, q := range rt.read {
		qs[i] = Queue{Topic: topic, Broker: q.Broker, ID: q.ID}
	}
	return qs, nil
}

func (c *PullConsumer) addr(ctx context.Context, q Queue) (string, error) {
	if c.isClosed() {
		return "", ErrClosed
	}
	rt, err := c.routes.get(ctx, q.Topic)
	if err != nil {
		return "", err
	}
	addr, err := c.routes.readAddr(rt, q.Broker)
	if err != nil {
		c.routes.markStale(q.Topic)
	}
	return addr, err
}

// Pull reads up to n messages of q from offset (n below 1 means
// DefaultPullBatch; the broker caps it at 1024). When there is none, the
// broker holds the pull until one comes, for up to 15 s or until ctx ends
// (a ctx deadline shortens the wait): then PullResult has no messages. An
// offset out of the queue's range returns an error matching ErrOffsetMoved
// with PullResult.Next set to where to pull from instead.
func (c *PullConsumer) Pull(ctx context.Context, q Queue, offset int64, n int) (PullResult, error) {
	if n < 1 {
		n = DefaultPullBatch
	}
	n = min(n, maxPullBatch)
	suspend := c.opts.pollSuspend
	if dl, ok := ctx.Deadline(); ok {
		// Leave the answer time to come back before ctx ends.
		suspend = min(suspend, max(0, time.Until(dl)*3/4))
	}
	ctx, cancel := context.WithTimeout(ctx, suspend+pullMargin)
	defer cancel()
	addr, err := c.addr(ctx, q)
	if err != nil {
		return PullResult{}, err
	}
	resp, err := c.pulls.invoke(ctx, addr, pullRequest(c.group, q.Topic, q.ID, offset, n, -1, suspend, "*", "TAG"))
	if err != nil {
		c.routes.readFailed(addr, err) // its replicas take the next reads
		if connFailure(err) {
			c.routes.brokerFailed(q.Topic) // it may have moved, or be restarting
		} else if ctx.Err() == nil {
			c.routes.markStale(q.Topic) // the broker may have moved
		}
		return PullResult{}, err
	}
	var res PullResult
	switch resp.Code {
	case remoting.Success, remoting.PullNotFound, remoting.PullRetryImmediately, remoting.PullOffsetMoved:
	default:
		return PullResult{}, fmt.Errorf("%s: %w", addr, remoting.ResponseError(resp))
	}
	if res.Next, err = resp.ExtInt("nextBeginOffset"); err != nil {
		return PullResult{}, fmt.Errorf("client: pull answer from %s: %w", addr, err)
	}
	res.Min, _ = resp.ExtInt("minOffset")
	res.Max, _ = resp.ExtInt("maxOffset")
	switch resp.Code {
	case remoting.PullOffsetMoved:
		return res, fmt.Errorf("%w: offset %d of %s/%s/%d, next %d", ErrOffsetMoved, offset, q.Topic, q.Broker, q.ID, res.Next)
	case remoting.Success:
		res.Messages, err = decodeResponse(resp)
		if err != nil {
			return PullResult{}, fmt.Errorf("client: pull answer from %s: %w", addr, err)
		}
		for _, m := range res.Messages {
			m.Broker = q.Broker
		}
	}
	return res, nil
}

// CommitOffset commits offset, the next one to read, as the group's
// offset of q.
func (c *PullConsumer) CommitOffset(ctx context.Context, q Queue, offset int64) error {
	addr, err := c.addr(ctx, q)
	if err != nil {
		return err
	}
	_, err = c.pool.call(ctx, addr, commitRequest(c.group, q.Topic, q.ID, offset))
	return err
}

// CommittedOffset is the group's committed offset of q; false when it has
// none.
func (c *PullConsumer) CommittedOffset(ctx context.Context, q Queue) (int64, bool, error) {
	addr, err := c.addr(ctx, q)
	if err != nil {
		return 0, false, err
	}
	resp, err := c.pool.call(ctx, addr, offsetRequest(remoting.QueryConsumerOffset, c.group, q.Topic, q.ID))
	if errors.Is(err, remoting.ErrQueryNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	off, err := resp.ExtInt("offset")
	if err != nil {
		return 0, false, fmt.Errorf("client: offset answer from %s: %w", addr, err)
	}
	return off, true, nil
}

// The requests about a group's place in a queue, which PullConsumer and
// PushConsumer both make. Their field lists are literals that NewRequest
// copies, so they stay on the stack.

// pullRequest is PULL_MESSAGE's request for up to n messages of a queue
// from offset on, committing commit as the group's offset (-1: none),
// held by the broker up to suspend while there are none, and filtered by
// the subscription expression expr of type exprType.
func pullRequest(group, topic string, queue int, offset int64, n int, commit int64, suspend time.Duration, expr, exprType string) *remoting.Command {
	return remoting.NewRequest(remoting.PullMessage, []remoting.Field{
		{Name: "consumerGroup", Value: group}, {Name: "topic", Value: topic}, {Name: "queueId", Value: strconv.Itoa(queue)},
		{Name: "queueOffset", Value: strconv.FormatInt(offset, 10)}, {Name: "maxMsgNums", Value: strconv.Itoa(n)},
		{Name: "sysFlag", Value: "0"}, {Name: "commitOffset", Value: strconv.FormatInt(commit, 10)},
		{Name: "suspendTimeoutMillis", Value: strconv.FormatInt(suspend.Milliseconds(), 10)},
		{Name: "subscription", Value: expr}, {Name: "subVersion", Value: "0"}, {Name: "expressionType", Value: exprType},
	}, nil)
}

// commitRequest is UPDATE_CONSUMER_OFFSET's request: offset, the next one
// to read, as group's offset of a queue.
func commitRequest(group, topic string, queue int, offset int64) *remoting.Command {
	return remoting.NewRequest(remoting.UpdateConsumerOffset, []remoting.Field{
		{Name: "consumerGroup", Value: group}, {Name: "topic", Value: topic}, {Name: "queueId", Value: strconv.Itoa(queue)},
		{Name: "commitOffset", Value: strconv.FormatInt(offset, 10)},
	}, nil)
}

// offsetRequest is a request about an offset of a queue for group:
// QUERY_CONSUMER_OFFSET's, GET_MIN_OFFSET's or GET_MAX_OFFSET's.
func offsetRequest(code int16, group, topic string, queue int) *remoting.Command {
	return remoting.NewRequest(code, []remoting.Field{
		{Name: "consumerGroup", Value: group}, {Name: "topic", Value: topic}, {Name: "queueId", Value: strconv.Itoa(queue)},
	}, nil)
}
