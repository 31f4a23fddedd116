package client

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// A message is found by its offsetMsgId (at the broker the id names), by
// its msgId and by a key; the consumer's copy carries the same ids.
func TestLookups(t *testing.T) {
	f := startFerry(t)
	f.createTopic(t, "lookups", 4)
	p := f.newProducer(t)
	ctx := t.Context()
	var sent []SendResult
	for i := range 3 {
		res, err := p.Send(ctx, &Message{Topic: "lookups", Keys: []string{"order-9"}, Body: fmt.Appendf(nil, "m%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, res)
	}
	a, err := NewAdmin(f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	res := sent[1]
	if addr, _, err := remoting.ParseOffsetMsgID(res.OffsetMsgID); err != nil || addr != f.brokers["broker-a"].addr {
		t.Fatalf("offsetMsgId %s names %s (%v), want broker-a at %s", res.OffsetMsgID, addr, err, f.brokers["broker-a"].addr)
	}
	m, err := a.ViewMessage(ctx, res.OffsetMsgID)
	if err != nil || string(m.Body) != "m1" || m.ID != res.MsgID || m.OffsetMsgID != res.OffsetMsgID || !slices.Equal(m.Keys, []string{"order-9"}) {
		t.Fatalf("view %s: %+v %v", res.OffsetMsgID, m, err)
	}
	if _, err := a.ViewMessage(ctx, "not-an-id"); err == nil {
		t.Fatal("view of a malformed id")
	}

	var byID []*MessageExt
	eventually(t, 5*time.Second, func() bool { // the key index follows the log
		byID, err = a.QueryMessages(ctx, "lookups", res.MsgID, 0)
		return err == nil
	}, "the msgId indexed: %v", err)
	if len(byID) != 1 || string(byID[0].Body) != "m1" || byID[0].OffsetMsgID != res.OffsetMsgID || byID[0].Broker != "broker-a" {
		t.Fatalf("query by msgId %s: %+v", res.MsgID, byID)
	}
	var byKey []*MessageExt
	eventually(t, 5*time.Second, func() bool {
		byKey, err = a.QueryMessages(ctx, "lookups", "order-9", 0)
		return err == nil && len(byKey) == 3
	}, "three messages by key: %d %v", len(byKey), err)
	if !slices.IsSortedFunc(byKey, func(x, y *MessageExt) int { return y.StoreTime.Compare(x.StoreTime) }) {
		t.Fatalf("by key, not newest first: %s … %s", byKey[0].Body, byKey[2].Body)
	}
	if _, err := a.QueryMessages(ctx, "lookups", "no-such-key", 0); !errors.Is(err, ErrNoMessage) {
		t.Fatalf("query of an unknown key: %v", err)
	}

	var r recorder
	f.startConsumer(t, "lookup-g", "lookups", "*", r.handle)
	eventually(t, 10*time.Second, func() bool { return r.len() >= 3 }, "3 messages")
	for _, got := range r.snapshot() {
		if string(got.Body) == "m1" && (got.OffsetMsgID != res.OffsetMsgID || got.ID != res.MsgID) {
			t.Fatalf("consumed ids %s %s, sent %s %s", got.ID, got.OffsetMsgID, res.MsgID, res.OffsetMsgID)
		}
	}
}
