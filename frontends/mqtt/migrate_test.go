package mqtt

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A data directory written by the layout that kept the state in meta/
// (testdata/layout-meta-v1.tar.gz: a persistent session "keeper" on
// fleet/+/telemetry with 10 messages waiting, a retained status/door, a
// topic "orders" of 5 messages whose group "billing" committed 3, and a
// message to orders delayed by 2 s) opens with everything as it was, now
// read from the log.
func TestDataDirectoryOfTheMetaLayoutIsMigrated(t *testing.T) {
	dir := t.TempDir()
	fixture, _ := filepath.Abs("testdata/layout-meta-v1.tar.gz")
	if out, err := exec.Command("tar", "-C", dir, "-xzf", fixture).CombinedOutput(); err != nil {
		t.Fatalf("unpack the fixture: %v: %s", err, out)
	}
	f := startFerry(t, dir, Config{})
	for round := range 2 { // migrated, then read from the log alone
		if !f.core.HasTopic("orders") {
			t.Fatalf("round %d: topic orders lost", round)
		}
		if off, ok := f.core.CommittedOffset("billing", "orders", 0); !ok || off != 3 {
			t.Fatalf("round %d: billing's offset on orders/0 is %d (%v), want 3", round, off, ok)
		}
		deadline := time.Now().Add(20 * time.Second)
		for _, hi := f.core.Offsets("orders", 0); hi < 6; _, hi = f.core.Offsets("orders", 0) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the delayed message never reached orders (end offset %d)", round, hi)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, hi := f.core.Offsets("orders", 0); hi != 6 {
			t.Fatalf("round %d: orders/0 ends at %d, want 6: the delayed message was delivered again", round, hi)
		}
		f.restart()
	}

	in := newInbox()
	f.connect("keeper", persistent, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(in.handler) })
	if got := in.waitN(t, 10); len(got) != 10 {
		t.Fatalf("the persistent session got %d messages, want 10", len(got))
	}
	late := newInbox()
	sub := f.connect("late")
	wait(t, sub.Subscribe("status/#", 1, late.handler), "subscribe")
	if got := late.waitN(t, 1); got[0].Topic() != "status/door" || string(got[0].Payload()) != "open" {
		t.Fatalf("retained after migration: %s %q", got[0].Topic(), got[0].Payload())
	}
}
