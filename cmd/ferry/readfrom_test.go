package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/controller"
)

// A consumer group reads from a replica while its master is gone: with a
// controller master timeout long enough to see the gap, every message
// acknowledged before kill -9 of the master is consumed before a new
// master exists, and a send in the gap is refused (no replica takes one).
func TestReadFromReplica(t *testing.T) {
	const masterTimeout = 20 * time.Second
	lab := newGroupLabCtl(t, "readfrom", []string{"--master-timeout", masterTimeout.String()},
		"--replication-mode", "sync", "--min-insync-replicas", "2")
	for id := int64(1); id <= 3; id++ { // replicas register under their id: ids above 0
		lab.start(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gs := lab.waitState(ctx, "a master and three in sync", func(gs controller.GroupState) bool { return len(gs.InSync) == 3 })

	admin, err := client.NewAdmin(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const topic = "ReadFrom"
	createTopicOnceRegistered(ctx, t, admin, lab.nss[0], topic, 4)
	prod, err := client.NewProducer(client.WithNameServers(lab.nss...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	led := newLedger()
	const n = 200
	for i := range n {
		body := fmt.Sprintf("0-%d", i) // the ledger's sender-seq
		if _, err := prod.Send(ctx, &client.Message{Topic: topic, Body: []byte(body)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		led.mu.Lock()
		led.acked[body] = true
		led.mu.Unlock()
	}
	// The replicas have the topic (its state record) and every message
	// before the master goes: each broker's heartbeat since the last send
	// reports the same log end.
	sent := time.Now()
	lab.waitState(ctx, "the replicas at the master's log end", func(g controller.GroupState) bool {
		return len(g.Brokers) == 3 && slices.IndexFunc(g.Brokers, func(b controller.BrokerState) bool {
			return !b.LastSeen.After(sent) || b.LogEnd != g.Brokers[0].LogEnd
		}) < 0
	})

	lab.kill9(gs.MasterID)
	killed := time.Now()

	// A send in the gap finds no master: the replicas take none.
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = prod.Send(sctx, &client.Message{Topic: topic, Body: []byte("in the gap")})
	scancel()
	if err == nil {
		t.Fatal("a send with the master gone was acknowledged")
	}
	t.Logf("send in the gap refused: %v", err)

	led.consumeFromFirst(ctx, t, lab.nss, "replica-readers", topic)
	v := led.waitAll(masterTimeout)
	took := time.Since(killed)
	if len(v.Lost) > 0 {
		t.Fatalf("messages acknowledged before the kill not consumed within %v: %v", took, v)
	}
	now, _ := lab.state(ctx)
	if now.Epoch != gs.Epoch {
		t.Fatalf("a new master (epoch %d) was elected before the group read everything (%v after the kill): the reads may not have come from a replica", now.Epoch, took)
	}
	t.Logf("all %d acknowledged messages consumed from a replica %v after kill -9 of the master, before any election (master timeout %v): %v",
		n, took.Round(10*time.Millisecond), masterTimeout, v)
}
