package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Durability over MQTT, tested by crashing: a persistent session subscribes
// and goes away; a QoS 1 publisher is killed mid-load with Ferry itself
// (kill -9); Ferry restarts on the same data and port; the session comes
// back and gets every message that was acknowledged. In both flush modes:
// with async a PUBACK means written to the files, which a crash of the
// process cannot lose. Ten rounds each, a fresh store each round.
func TestMQTTAcknowledgedSurvivesKill9(t *testing.T) {
	bin := buildFerry(t)
	for _, flush := range []string{"sync", "async"} {
		t.Run(flush, func(t *testing.T) {
			for round := range 10 {
				t.Run(strconv.Itoa(round), func(t *testing.T) { mqttAckedSurvivesKill9(t, bin, flush) })
			}
		})
	}
}

func mqttAckedSurvivesKill9(t *testing.T, bin, flush string) {
	data := filepath.Join(t.TempDir(), "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String() // a port for both runs: the session reconnects to it
	ln.Close()
	start := func() *ferryProc {
		p := startFerry(t, bin, "serve", "--data-dir", data, "--flush", flush, "--namesrv-addr", "off", "--native-addr", "off",
			"--mqtt-addr", addr, "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		return p
	}
	connect := func(id string, clean bool, h paho.MessageHandler) paho.Client {
		// A publish made as the connection breaks waits for the client's
		// write timeout (30 s by default) before it fails.
		o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
			SetAutoReconnect(false).SetOrderMatters(true).SetDefaultPublishHandler(h).SetWriteTimeout(5 * time.Second)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		return c
	}

	p := start()
	sub := connect("survivor", false, nil)
	if tok := sub.Subscribe("crash/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sub.Disconnect(100)

	var mu sync.Mutex
	acked := map[int]bool{}
	pub := connect("loader", true, nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += 4 {
				tok := pub.Publish(fmt.Sprintf("crash/%d", w), 1, false, strconv.Itoa(i))
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					return
				}
				mu.Lock()
				acked[i] = true
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 400 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	wg.Wait()
	pub.Disconnect(0)
	mu.Lock()
	want := len(acked)
	mu.Unlock()

	start()
	got := map[int]bool{}
	var gmu sync.Mutex
	all := make(chan struct{})
	var once sync.Once
	back := connect("survivor", false, func(_ paho.Client, m paho.Message) {
		i, _ := strconv.Atoi(string(m.Payload()))
		gmu.Lock()
		defer gmu.Unlock()
		got[i] = true
		missing := 0
		for k := range acked {
			if !got[k] {
				missing++
			}
		}
		if missing == 0 {
			once.Do(func() { close(all) })
		}
	})
	defer back.Disconnect(0)
	select {
	case <-all:
	case <-time.After(30 * time.Second):
	}
	gmu.Lock()
	defer gmu.Unlock()
	var lost []int
	for k := range acked {
		if !got[k] {
			lost = append(lost, k)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("flush %s: %d of %d acknowledged messages lost after kill -9 (e.g. %v)", flush, len(lost), want, lost[:min(10, len(lost))])
	}
	t.Logf("flush %s: %d acknowledged before kill -9, all delivered after the restart (%d delivered in all)", flush, want, len(got))
}
