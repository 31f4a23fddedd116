package client

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// ErrNoMessage: a lookup found no message.
var ErrNoMessage = errors.New("client: no such message")

// maxQuery caps the messages QueryMessages asks each broker for (the
// broker caps it too).
const maxQuery = 256

// ViewMessage returns the message an offsetMsgId (SendResult.OffsetMsgID,
// MessageExt.OffsetMsgID) names: it asks the broker at the address the id
// carries for the message at the commit-log offset it carries
// (VIEW_MESSAGE_BY_ID), as RocketMQ's tools do.
func (a *Admin) ViewMessage(ctx context.Context, offsetMsgID string) (*MessageExt, error) {
	addr, off, err := remoting.ParseOffsetMsgID(offsetMsgID)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	resp, err := a.call(ctx, addr, remoting.NewRequest(remoting.ViewMessageByID, remoting.Pairs("offset", strconv.FormatInt(off, 10)), nil))
	if errors.Is(err, remoting.ErrSystem) { // the broker's answer for an offset it has no message at
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMessage, offsetMsgID, err)
	}
	if err != nil {
		return nil, fmt.Errorf("client: view message %s: %w", offsetMsgID, err)
	}
	msgs, err := decodeMessages(resp.Body)
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("%w: %d messages in the answer", errMalformed, len(msgs))
	}
	return msgs[0], nil
}

// QueryMessages returns up to max messages of topic (max 0: 32; at most
// 256) that carry key, from every broker, newest first: key is one of
// their keys or their msgId (SendResult.MsgID, the UNIQ_KEY brokers index
// too). QUERY_MESSAGE, as RocketMQ's queryMsgByKey and queryMsgByUniqueKey.
func (a *Admin) QueryMessages(ctx context.Context, topic, key string, max int) ([]*MessageExt, error) {
	if max <= 0 {
		max = 32
	}
	max = min(max, maxQuery)
	var out []*MessageExt
	err := a.eachBroker(ctx, func(broker, addr string) error {
		resp, err := a.call(ctx, addr, remoting.NewRequest(remoting.QueryMessage, remoting.Pairs(
			"topic", topic, "key", key, "maxNum", strconv.Itoa(max), "beginTimestamp", "0",
			"endTimestamp", strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10),
		), nil))
		if errors.Is(err, remoting.ErrQueryNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("client: query %s on %s: %w", topic, broker, err)
		}
		msgs, err := decodeMessages(resp.Body)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			m.Broker = broker
		}
		out = append(out, msgs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StoreTime.After(out[j].StoreTime) })
	if len(out) > max {
		out = out[:max]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: key %q in %s", ErrNoMessage, key, topic)
	}
	return out, nil
}
