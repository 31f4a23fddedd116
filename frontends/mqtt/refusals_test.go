package mqtt

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
)

// A PUBLISH the ACL refuses is counted under cause acl, one to a reserved
// topic under reserved; the publish latency is observed for what reaches
// the core.
func TestRefusalsByCauseAndPublishLatency(t *testing.T) {
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte("dev:"+string(h)+"\n"), 0o600)
	os.WriteFile(acl, []byte("user dev\ntopic write ok/#\n"), 0o600)
	a, err := auth.New(auth.Config{PasswordFile: pw, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	f := startFerry(t, t.TempDir(), Config{Guard: a})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f.mqtt); err != nil {
		t.Fatal(err)
	}
	c := f.connect("dev", func(o *paho.ClientOptions) { o.SetUsername("dev").SetPassword("secret") })
	wait(t, c.Publish("ok/1", 1, false, "fine"), "allowed publish")
	c.Publish("secret/1", 0, false, "no") // QoS 0: dropped without an answer
	c.Publish("$own/1", 0, false, "no")
	wait(t, c.Publish("ok/2", 1, false, "fine"), "allowed publish") // after the two refused, in order
	want := map[string]float64{"acl": 1, "reserved": 1}
	var latency uint64
	deadline := time.Now().Add(5 * time.Second)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "ferry_mqtt_refused_total":
				for _, m := range mf.GetMetric() {
					got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			case "ferry_mqtt_publish_duration_seconds":
				latency = mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		if got["acl"] == want["acl"] && got["reserved"] == want["reserved"] && got["topic"] == 0 && latency == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v, publish latency samples %d; want %v and 2 (the allowed ones)", got, latency, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
