package cluster_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ferrymq/ferry/cluster"
)

// Sync returns once the NameServer has what the broker serves now: a
// topic created just before is routable when it returns, with no waiting
// for the periodic registration.
func TestSyncRegistersBeforeReturning(t *testing.T) {
	_, nsAddr := startNameServer(t, nil)
	b := newCore(t)
	r := startRegistrar(t, b, hourly("broker-a", nsAddr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, topic := range []string{"first", "second", "third"} {
		if _, err := b.CreateTopic(topic, 2); err != nil {
			t.Fatal(err)
		}
		if err := r.Sync(ctx); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if brokersOf(t, nsAddr, topic)["broker-a"] == "" {
			t.Fatalf("%s not routed when Sync returned", topic)
		}
	}
}

// Sync says which NameServer did not take the registration, and a dead
// one holds it no longer than its context.
func TestSyncReportsFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there
	r := startRegistrar(t, newCore(t), hourly("broker-a", dead))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Sync(ctx); err == nil {
		t.Fatal("sync with a dead NameServer succeeded")
	} else {
		t.Logf("sync: %v", err)
	}

	// Without NameServers there is nothing to wait for.
	alone, err := cluster.NewRegistrar(newCore(t), cluster.RegistrarOptions{Identity: cluster.Identity{Name: "broker-b"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := alone.Sync(ctx); err != nil {
		t.Fatalf("sync without NameServers: %v", err)
	}
}
