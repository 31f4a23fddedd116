package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/frontends/mqtt"
)

// raiseNoFile lifts this process's open-file limit to its hard limit and
// skips the test if that is below need.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max < need {
		t.Skipf("the open-file hard limit is %d; this test needs %d", rl.Max, need)
	}
	old := rl.Cur
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rl.Cur = old
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	})
}

// metric returns the value of the series line that starts with series in
// Ferry's /metrics, or -1.
func metric(t *testing.T, httpAddr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

// mqttRoundTrip publishes one QoS 1 message with a paho client and waits for a
// second paho client, subscribed, to receive it.
func mqttRoundTrip(t *testing.T, addr, what string) {
	t.Helper()
	got := make(chan struct{}, 1)
	connect := func(id string) paho.Client {
		o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).
			SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect %s: %v", what, id, tok.Error())
		}
		return c
	}
	sub := connect("rt-sub")
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("rt/x", 1, func(paho.Client, paho.Message) {
		select {
		case got <- struct{}{}:
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: subscribe: %v", what, tok.Error())
	}
	pub := connect("rt-pub")
	defer pub.Disconnect(0)
	if tok := pub.Publish("rt/x", 1, false, what); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: publish: %v", what, tok.Error())
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the message did not arrive", what)
	}
}

// What the broker's resident set may reach (docs/mqtt.md, "Limits"): with
// 10,000 connections that never send CONNECT and 32 oversized CONNECTs
// (measured: about 80 MB), and with 10,000 idle clients logged in (under
// 10 KB each, most of it the reader goroutine's 4 KiB stack; measured:
// about 127 MB; 335 MB before the engine's fork in third_party).
const (
	rssBoundMB         = 300
	rssLoggedInBoundMB = 220
)

// No client can exhaust the broker: 10,000 idle TCP connections to the MQTT
// port and 32 CONNECTs declaring 4 MiB each keep Ferry's resident set under
// rssBoundMB, and a normal client publishes and receives meanwhile; the
// same 10,000, logged in, too.
func TestMQTTIdleConnectionsAndOversizedConnects(t *testing.T) {
	bin := buildFerry(t)
	const idle = 10_000
	raiseNoFile(t, idle+1000)
	p, addr, httpAddr := startLimited(t, bin, idle+2000, []string{"FERRY_MQTT_CONNECT_TIMEOUT=60s"}, "mqtt")
	pid := p.cmd.Process.Pid
	base := float64(rss(t, pid)) / 1e6

	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// 32 CONNECTs of 4 MiB declared, each writing its body until refused.
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write([]byte{0x10, 0x80, 0x80, 0x80, 0x02, 0, 4, 'M', 'Q', 'T', 'T', 4}); err != nil {
				return
			}
			chunk := make([]byte, 64<<10)
			for n := 0; n < 4<<20; n += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					break
				}
				mu.Lock()
				sent += len(chunk)
				mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, c) // until the server closes it
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, httpAddr, `ferry_mqtt_open_connections{listener="tcp"}`) < idle {
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not accept the %d connections: %v open", idle, metric(t, httpAddr, `ferry_mqtt_open_connections{listener="tcp"}`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := metric(t, httpAddr, `ferry_mqtt_limit_hits_total{limit="mqtt.max-connect-size"}`); n != 32 {
		t.Fatalf("%v oversized CONNECTs counted, want 32", n)
	}
	mqttRoundTrip(t, addr, "beside 10,000 idle connections")
	before := float64(rss(t, pid)) / 1e6
	t.Logf("VmRSS %.0f MB at start, %.0f MB with %d idle connections after 32 oversized CONNECTs (%.1f MB of their bodies written before the refusal)",
		base, before, idle, float64(sent)/1e6)
	if before > rssBoundMB {
		t.Fatalf("VmRSS %.0f MB with %d idle connections, over the bound of %d MB", before, idle, rssBoundMB)
	}

	// The same connections log in (MQTT 3.1.1, clean session, keep-alive
	// 0) and stay idle.
	for i, c := range conns {
		id := fmt.Sprintf("idle-%05d", i)
		pk := append([]byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, byte(len(id))}, id...)
		if _, err := c.Write(pk); err != nil {
			t.Fatalf("CONNECT %d: %v", i, err)
		}
	}
	ack := make([]byte, 4)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK %d: %v %x", i, err, ack)
		}
	}
	mqttRoundTrip(t, addr, "beside 10,000 idle clients")
	after := float64(rss(t, pid)) / 1e6
	t.Logf("VmRSS %.0f MB with %d idle clients logged in", after, idle)
	if after > rssLoggedInBoundMB {
		t.Fatalf("VmRSS %.0f MB with %d idle clients, over the bound of %d MB", after, idle, rssLoggedInBoundMB)
	}
}

// The accept loop outlives running out of file descriptors: under a low
// open-file limit, connections are opened until accepting fails (EMFILE);
// once they are closed, the MQTT listener accepts again and a client
// publishes and receives.
func TestMQTTAcceptSurvivesEMFILE(t *testing.T) {
	bin := buildFerry(t)
	raiseNoFile(t, 2000)
	p, addr, httpAddr := startLimited(t, bin, 256, nil, "mqtt")
	hc := &http.Client{Timeout: 10 * time.Second} // keeps its connection: asked while file descriptors run out
	if code, body := readyz(t, hc, httpAddr); code != http.StatusOK {
		t.Fatalf("/readyz before the burst: %d %s", code, body)
	}
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	defer closeAll()
	for !strings.Contains(p.log(), "mqtt: accepting a connection failed; retrying") {
		if len(conns) >= 1000 {
			t.Fatalf("1000 connections and no accept error logged:\n%s", p.log())
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	if !regexp.MustCompile(`accepting a connection failed.*too many open files`).MatchString(p.log()) {
		t.Fatalf("the accept error is not EMFILE:\n%s", p.log())
	}
	if code, body := readyz(t, hc, httpAddr); code != http.StatusServiceUnavailable || !strings.Contains(body, "mqtt") {
		t.Fatalf("/readyz while accept fails: %d %q, want 503 naming mqtt", code, body)
	}
	n := len(conns)
	closeAll()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("after").
			SetAutoReconnect(false).SetConnectTimeout(time.Second).SetProtocolVersion(4))
		tok := c.Connect()
		if tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the MQTT listener does not accept after the burst: %v\n%s", tok.Error(), p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("accept failed (EMFILE) after %d connections; a client connected %v after they were closed", n, time.Since(start).Round(time.Millisecond))
	mqttRoundTrip(t, addr, "after the EMFILE burst")
	if code, body := readyz(t, hc, httpAddr); code != http.StatusOK {
		t.Fatalf("/readyz after the burst: %d %s", code, body)
	}
	if up := metric(t, httpAddr, `ferry_mqtt_listener_up{listener="tcp"}`); up != 1 {
		t.Fatalf("ferry_mqtt_listener_up %v after the burst, want 1", up)
	}
	if errs := metric(t, httpAddr, `ferry_mqtt_accept_errors_total{listener="tcp"}`); errs < 1 {
		t.Fatalf("ferry_mqtt_accept_errors_total %v, want the EMFILE counted", errs)
	}
}

// The limit keys reach the MQTT front-end; max-topic-alias 0 means none.
func TestMQTTConfigLimits(t *testing.T) {
	cfg := config.Default()
	c := mqtt.ConfigFrom(cfg, slog.Default(), nil)
	if c.ConnectTimeout != 10*time.Second || c.MaxConnectSize != 64<<10 || c.MaxTopicLevels != 128 ||
		c.MaxTopicLength != 4096 || c.MaxTopicAlias != 10 || c.MaxConnections != 1_000_000 {
		t.Fatalf("defaults not passed on: %+v", c)
	}
	cfg.MQTT.MaxTopicAlias = 0
	if c := mqtt.ConfigFrom(cfg, slog.Default(), nil); c.MaxTopicAlias != -1 {
		t.Fatalf("max-topic-alias 0 became %d, want -1 (none)", c.MaxTopicAlias)
	}
}
