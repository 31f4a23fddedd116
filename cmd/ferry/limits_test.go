package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// TestLimitsBinary runs ferry as a real process under the abuse its
// limits are for (docs/native.md, "Limits").
func TestLimitsBinary(t *testing.T) {
	bin := buildFerry(t)
	t.Run("accept survives running out of file descriptors", func(t *testing.T) { testAcceptSurvivesEMFILE(t, bin) })
	t.Run("memory stays bounded under idle, huge-frame and non-reading clients", func(t *testing.T) { testBoundedUnderAbuse(t, bin) })
}

// startLimited runs ferry serve with one listener, "native" or "mqtt" (on
// TCP), and HTTP, its open files limited to nofile, and returns it with
// that listener's and HTTP's addresses.
func startLimited(t *testing.T, bin string, nofile int, env []string, listener string) (p *ferryProc, addr, httpAddr string) {
	t.Helper()
	nativeAddr, mqttAddr, logged := "off", "off", `msg="native protocol listening" addr=(\S+)`
	if listener == "mqtt" {
		mqttAddr, logged = "127.0.0.1:0", `msg="mqtt: listening".*listener=tcp addr=(\S+)`
	} else {
		nativeAddr = "127.0.0.1:0"
	}
	args := []string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile), bin,
		"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "off", "--native-addr", nativeAddr,
		"--mqtt-addr", mqttAddr, "--mqtt-ws-addr", "off", "--http-addr", "127.0.0.1:0", "--log-format", "text"}
	p = startFerryEnv(t, "/bin/sh", env, args...)
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	n := regexp.MustCompile(logged).FindStringSubmatch(p.log())
	h := regexp.MustCompile(`msg="http listening".* addr=(\S+)`).FindStringSubmatch(p.log())
	if n == nil || h == nil {
		t.Fatalf("no %s or HTTP address logged:\n%s", listener, p.log())
	}
	return p, n[1], h[1]
}

// readyz asks /readyz over hc, which keeps its connection: a server out of
// file descriptors still answers on it.
func readyz(t *testing.T, hc *http.Client, addr string) (int, string) {
	t.Helper()
	resp, err := hc.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// roundTrip is one GET_MAX_OFFSET request on a new connection to the
// native listener.
func roundTrip(ctx context.Context, addr string) error {
	c, err := remoting.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Invoke(ctx, remoting.NewRequest(remoting.GetMaxOffset, remoting.Pairs("topic", "TBW102", "queueId", "0"), nil))
	return err
}

// A burst of connections past the open-file limit makes accept fail
// (EMFILE): the listener retries, /readyz says so meanwhile, and once the
// connections close the listener accepts again and /readyz is ok.
func testAcceptSurvivesEMFILE(t *testing.T, bin string) {
	p, native, httpAddr := startLimited(t, bin, 200, []string{"FERRY_NATIVE_FIRST_REQUEST_TIMEOUT=5m"}, "native")
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	if code, body := readyz(t, hc, httpAddr); code != http.StatusOK {
		t.Fatalf("/readyz before the burst: %d %s", code, body)
	}
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var code int
	var body string
	for len(conns) < 1000 {
		for range 10 {
			nc, err := net.Dial("tcp", native)
			if err != nil {
				t.Fatalf("dial %d: %v", len(conns), err)
			}
			conns = append(conns, nc)
		}
		if code, body = readyz(t, hc, httpAddr); code != http.StatusOK {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "native:") || !strings.Contains(body, "too many open files") {
		t.Fatalf("/readyz after %d connections to a ferry limited to 200 files: %d %q", len(conns), code, body)
	}
	t.Logf("after %d connections: /readyz %d %q", len(conns), code, body)
	for _, nc := range conns {
		nc.Close()
	}
	conns = nil
	closed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		err := roundTrip(rctx, native)
		rcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the listener does not accept again: %v\n%s", err, p.log())
		}
	}
	t.Logf("a round trip %v after the connections closed", time.Since(closed).Round(time.Millisecond))
	for {
		if code, body = readyz(t, hc, httpAddr); code == http.StatusOK {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("/readyz once accepting again: %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(p.log(), "accepting a connection failed; retrying") || !strings.Contains(p.log(), "accepting connections again") {
		t.Errorf("the failing accepts and the recovery are not logged:\n%s", p.log())
	}
}

// rss is the process's resident memory in bytes (Linux).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// 10,000 idle connections, 32 connections each declaring a 16 MiB frame
// and sending no more of it, and a client pipelining 600 pulls of large
// messages without reading the responses: the broker's memory stays
// bounded, and a normal client is served all along.
func testBoundedUnderAbuse(t *testing.T, bin string) {
	const idle = 10000
	const need = idle + 1000
	raiseNoFile(t, need)
	// Idle connections stay for the test, not the first-request timeout,
	// and more than the default 10,000 connections are let in. The memory
	// limit has the collector reclaim the garbage the pulls leave (the
	// default gc-percent of 400 lets it grow to four times what is live).
	p, native, httpAddr := startLimited(t, bin, need, []string{"FERRY_NATIVE_FIRST_REQUEST_TIMEOUT=5m", "FERRY_NATIVE_MAX_CONNECTIONS=11000",
		"FERRY_RUNTIME_MEMORY_LIMIT=" + strconv.Itoa(200<<20)}, "native")
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := rss(t, pid)

	// Messages to pull: 64 of 16 KiB on queue 0.
	c, err := remoting.Dial(ctx, native)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := make([]byte, 16<<10)
	for range 64 {
		req := remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs(
			"a", "pg", "b", "abuse", "e", "0", "f", "0", "g", "1700000000000", "h", "0", "i", "", "j", "0"), body)
		resp, err := c.Invoke(ctx, req)
		if err != nil || resp.Code != remoting.Success {
			t.Fatalf("send: %v %v", resp, err)
		}
	}

	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for len(conns) < idle {
		nc, err := net.Dial("tcp", native)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, nc)
	}
	afterIdle := rss(t, pid)

	// 32 frames that declare 16 MiB and send 1 KB of it.
	req := remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs("b", "abuse"), make([]byte, 1000))
	huge, err := remoting.AppendFrame(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(huge, remoting.MaxFrame)
	for range 32 {
		nc, err := net.Dial("tcp", native)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		if _, err := nc.Write(huge); err != nil {
			t.Fatal(err)
		}
	}

	// 600 pulls of 32 messages of 16 KiB each, never read: 300 MiB of
	// responses, far over the 64 MiB a connection may leave unread.
	greedy, err := net.Dial("tcp", native)
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, greedy)
	var pulls []byte
	for i := range 600 {
		req := remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
			"consumerGroup", "g", "topic", "abuse", "queueId", "0", "queueOffset", "0",
			"maxMsgNums", "32", "sysFlag", "0", "subscription", "*", "suspendTimeoutMillis", "0"), nil)
		req.Opaque = int32(i)
		if pulls, err = remoting.AppendFrame(pulls, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := greedy.Write(pulls); err != nil {
		t.Fatal(err)
	}

	// Meanwhile a normal client is served, and the broker disconnects the
	// one that does not read.
	peak := int64(0)
	for {
		if err := roundTrip(ctx, native); err != nil {
			t.Fatalf("a normal client's round trip: %v", err)
		}
		peak = max(peak, rss(t, pid))
		if _, text := httpGet(t, "http://"+httpAddr+"/metrics"); strings.Contains(text, `ferry_native_connections_closed_total{limit="max_queued_bytes"} 1`+"\n") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the client that does not read was not disconnected:\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its connection closed, the pulls' responses are freed; the others
	// are still held open.
	nc := conns[0]
	nc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := nc.Read(make([]byte, 1)); err == nil || !os.IsTimeout(err) {
		t.Fatalf("an idle connection was closed early: %v", err)
	}
	peak = max(peak, rss(t, pid))
	t.Logf("broker RSS: %d MiB at start, %d MiB with %d idle connections, peak %d MiB with the 32 huge frames and the pulls",
		start>>20, afterIdle>>20, idle, peak>>20)
	if peak > 300<<20 {
		t.Fatalf("broker RSS reached %d MiB, over 300 MiB", peak>>20)
	}
	if !strings.Contains(p.log(), "does not read its responses") {
		t.Errorf("the disconnect of the client that does not read is not logged:\n%s", p.log())
	}
}
