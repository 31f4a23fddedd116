package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/client"
)

// The admin CLI against a real ferry serve: -o json of each list and
// describe parsed back, topics and groups deleted, offsets reset, dead
// letters listed with their reason and resent, MQTT clients listed and
// kicked, consume --format.
func TestAdminCLI(t *testing.T) {
	bin := buildFerry(t)
	p := startFerry(t, bin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "127.0.0.1:0",
		"--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "off", "--http-addr", "127.0.0.1:0", "--log-format", "text")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	ns := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(p.log())[1]
	api := "http://" + regexp.MustCompile(`msg="http listening".* addr=(\S+)`).FindStringSubmatch(p.log())[1]
	mqttAddr := regexp.MustCompile(`msg="mqtt: listening".*listener=tcp addr=(\S+)`).FindStringSubmatch(p.log())[1]
	waitRoute(t, ns, "TBW102")
	// Without a password file any username is taken; a change needs one.
	run := func(args ...string) (string, error) {
		t.Helper()
		c := exec.Command(bin, append(args, "--log-level", "warn")...)
		c.Env = append(environWithoutFerry(), "FERRY_NAMESRV="+ns, "FERRY_USERNAME=ops", "FERRY_PASSWORD=x")
		out, err := c.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out) + string(ee.Stderr), err
		}
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	jsonOf := func(v any, args ...string) {
		t.Helper()
		out := must(append(args, "-o", "json")...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("ferry %s -o json: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	must("topic", "create", "orders", "--queues", "1")
	waitRoute(t, ns, "orders")
	c := exec.Command(bin, "produce", "--topic", "orders", "--subject", "eu", "--key", "k1", "--log-level", "warn")
	c.Env = append(environWithoutFerry(), "FERRY_NAMESRV="+ns)
	c.Stdin = strings.NewReader("one\ntwo\nnot json\n")
	out, err := c.Output()
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	var produced []string // msgIds
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		produced = append(produced, strings.Fields(l)[0])
	}
	if len(produced) != 3 {
		t.Fatalf("produce printed %q, want an id a message", out)
	}

	var topics []string
	jsonOf(&topics, "topic", "list")
	if !contains(topics, "orders") {
		t.Fatalf("topic list: %v", topics)
	}
	var tv topicView
	jsonOf(&tv, "topic", "describe", "orders")
	if tv.Name != "orders" || len(tv.Queues) != 1 || tv.Queues[0].Messages != 3 {
		t.Fatalf("topic describe: %+v", tv)
	}
	var msgs []messageView
	jsonOf(&msgs, "message", "get", produced[0], "--topic", "orders")
	if len(msgs) != 1 || msgs[0].Body == nil || *msgs[0].Body != "one" || msgs[0].Subject != "eu" {
		t.Fatalf("message get: %+v", msgs)
	}
	var cv clusterView
	jsonOf(&cv, "cluster", "list")
	if len(cv.Brokers) != 1 || cv.Brokers[0].Role != "master" {
		t.Fatalf("cluster list: %+v", cv)
	}

	// consume --format json: ids, subject, deliveries.
	out2 := must("consume", "--topic", "orders", "--group", "g", "--count", "3", "--format", "json")
	var got []messageView
	for _, l := range strings.Split(strings.TrimSpace(out2), "\n") {
		var m messageView
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("consume --format json line %q: %v", l, err)
		}
		got = append(got, m)
	}
	if len(got) != 3 || !contains(produced, got[0].ID) || got[0].Subject != "eu" || got[0].DeliveryCount != 1 {
		t.Fatalf("consume --format json: %+v", got)
	}
	if out := must("consume", "--topic", "orders", "--group", "g2", "--count", "1", "--format", "text"); !strings.Contains(out, "id="+produced[0]) ||
		!strings.Contains(out, `subject="eu" deliveries=1`) || !strings.Contains(out, "\none\n") {
		t.Fatalf("consume --format text: %q", out)
	}
	if out, err := run("consume", "--topic", "orders", "--group", "g", "--format", "yaml"); err == nil || !strings.Contains(out, "--format") {
		t.Fatalf("consume --format yaml: %v %s", err, out)
	}
	var groups []string
	jsonOf(&groups, "group", "list")
	if !contains(groups, "g") {
		t.Fatalf("group list: %v", groups)
	}
	var gv groupView
	jsonOf(&gv, "group", "describe", "g")
	ordersQueues := 0 // the group's retry queue may be listed too
	for _, q := range gv.Queues {
		if q.Topic == "orders" {
			ordersQueues++
		}
	}
	if gv.Name != "g" || gv.Lag != 0 || ordersQueues != 1 {
		t.Fatalf("group describe: %+v", gv)
	}

	// Offsets reset through the admin API.
	var reset []groupView
	jsonOf(&reset, "group", "reset-offset", "g", "--to", "first", "--api", api)
	if len(reset) != 1 || reset[0].Lag != 3 {
		t.Fatalf("reset-offset --to first: %+v", reset)
	}
	jsonOf(&reset, "group", "reset-offset", "g", "--to", "2", "--topic", "orders", "--queue", "0", "--api", api)
	if reset[0].Lag != 1 {
		t.Fatalf("reset-offset --to 2: %+v", reset)
	}
	for _, bad := range [][]string{{"--to", "2"}, {"--to", "yesterday"}} {
		if out, err := run(append([]string{"group", "reset-offset", "g", "--api", api}, bad...)...); err == nil || !strings.Contains(out, "--to") {
			t.Fatalf("reset-offset %v: %v %s", bad, err, out)
		}
	}
	if out := must("topic", "purge", "orders", "--api", api); !strings.Contains(out, "g2") {
		t.Fatalf("topic purge: %s", out)
	}
	jsonOf(&gv, "group", "describe", "g")
	if gv.Lag != 0 {
		t.Fatalf("after purge: %+v", gv)
	}
	if out, err := run("group", "delete", "nope", "--api", api); err == nil || !strings.Contains(out, "nope") {
		t.Fatalf("group delete of no group: %v %s", err, out)
	}
	if out := must("group", "delete", "g2", "--api", api); !strings.Contains(out, "deleted group g2") {
		t.Fatalf("group delete: %s", out)
	}
	jsonOf(&groups, "group", "list")
	if contains(groups, "g2") {
		t.Fatalf("g2 still listed: %v", groups)
	}

	// A consumer fails the poison message: dead-lettered with the reason.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var fixed atomic.Bool
	var poisonOK atomic.Int32
	shop, err := client.NewPushConsumer("shop", client.WithNameServers(ns), client.WithOrdered(), client.WithMaxRetries(1),
		client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	shop.Subscribe("orders", "*", func(_ context.Context, m *client.MessageExt) error {
		if string(m.Body) != "not json" {
			return nil
		}
		if !fixed.Load() {
			return errors.New("order is not JSON")
		}
		poisonOK.Add(1)
		return nil
	})
	if err := shop.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer shop.Close()
	var dls []deadLetterView
	for deadline := time.Now().Add(30 * time.Second); len(dls) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		jsonOf(&dls, "dlq", "list", "shop", "--api", api)
	}
	if dls[0].Body == nil || *dls[0].Body != "not json" || dls[0].OriginalID != produced[2] && dls[0].ProducerID != produced[2] || dls[0].DeadLetterReason == "" {
		t.Fatalf("dlq list: %+v", dls[0])
	}
	if out := must("dlq", "list", "shop", "--api", api); !strings.Contains(out, dls[0].DeadLetterReason) {
		t.Fatalf("dlq list table lacks the reason %q:\n%s", dls[0].DeadLetterReason, out)
	}
	if out, err := run("dlq", "resend", "shop", "--api", api); err == nil || !strings.Contains(out, "--all") {
		t.Fatalf("dlq resend without ids: %v %s", err, out)
	}
	if out, err := run("dlq", "resend", "shop", "no-such-id", "--api", api); err == nil || !strings.Contains(out, "no-such-id") {
		t.Fatalf("dlq resend of no id: %v %s", err, out)
	}
	fixed.Store(true)
	must("dlq", "resend", "shop", dls[0].ID, "--api", api)
	waitCount(t, &poisonOK, 1)
	if out := must("dlq", "resend", "shop", "--all", "--api", api); !strings.Contains(out, "resent 1 dead letters") {
		t.Fatalf("dlq resend --all: %s", out)
	}
	waitCount(t, &poisonOK, 2)

	// MQTT clients: listed, kicked.
	lost := make(chan struct{}, 1)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("dev-9").SetUsername("device").
		SetAutoReconnect(false).SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	if tok := dev.Subscribe("devices/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}
	var cls []mqttClientView
	jsonOf(&cls, "mqtt", "clients", "--api", api)
	if len(cls) != 1 || cls[0].ID != "dev-9" || cls[0].User != "device" || cls[0].Subscriptions != 1 || cls[0].ProtocolVersion != 4 {
		t.Fatalf("mqtt clients: %+v", cls)
	}
	if out := must("mqtt", "clients", "--api", api); !strings.Contains(out, "dev-9") || !strings.Contains(out, "3.1.1") {
		t.Fatalf("mqtt clients table:\n%s", out)
	}
	must("mqtt", "kick", "dev-9", "--api", api)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("mqtt kick: the client is still connected")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) { // once the engine has ended its session
		out, err := run("mqtt", "kick", "dev-9", "--api", api)
		if err != nil && strings.Contains(out, "dev-9") && strings.Contains(out, "not found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kick of a gone client: %v %s", err, out)
		}
	}

	// Topic delete; a second one finds nothing.
	if out := must("topic", "delete", "orders", "--api", api); !strings.Contains(out, "deleted topic orders") {
		t.Fatalf("topic delete: %s", out)
	}
	if out, err := run("topic", "delete", "orders", "--api", api); err == nil || !strings.Contains(out, "orders") {
		t.Fatalf("second topic delete: %v %s", err, out)
	}
	if out, err := run("topic", "list", "-o", "yaml"); err == nil || !strings.Contains(out, "-o") {
		t.Fatalf("-o yaml: %v %s", err, out)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func waitCount(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); n.Load() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("count %d, want %d", n.Load(), want))
		}
	}
}
