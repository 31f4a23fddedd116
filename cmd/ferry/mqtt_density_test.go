package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Connection density: how much memory a broker holds per idle MQTT
// connection. The test opens FERRY_MQTT_DENSITY idle connections to the real
// binary, and to Mosquitto when it is installed, and logs each broker's
// resident set before and after and the difference per connection, for two
// kinds of idle client, each on a fresh broker: one that sends a CONNECT
// (keep alive 0) and nothing after its CONNACK, and one that keeps its
// connection up as devices do, with keep alive 60 s, and has sent one
// PINGREQ. It is a measurement, not a timed test: it asserts only that
// every connection was accepted, and runs only when asked, since it needs a
// file descriptor per connection (it raises its limit, which takes root
// past the hard one):
//
//	FERRY_MQTT_DENSITY=10000 go test -run TestMQTTIdleConnectionDensity -v ./cmd/ferry/
func TestMQTTIdleConnectionDensity(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FERRY_MQTT_DENSITY"))
	if n <= 0 {
		t.Skip("set FERRY_MQTT_DENSITY to the number of idle connections to open")
	}
	bin := buildFerry(t)
	want := uint64(n + 128) // the connections, and a few descriptors for the rest (the broker holds some 15)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < want {
		hard := lim.Max
		lim.Cur, lim.Max = want, max(lim.Max, want)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raise the open-files limit to %d for %d connections (the hard limit is %d; past it takes root): %v", want, n, hard, err)
		}
	}
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		mosq = "/usr/sbin/mosquitto"
		if _, err := os.Stat(mosq); err != nil {
			mosq = ""
			t.Log("mosquitto is not installed: no comparison")
		}
	}

	for _, keepAlive := range []uint16{0, 60} {
		addr := freeAddr(t)
		p := startFerry(t, bin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "off",
			"--native-addr", "off", "--mqtt-addr", addr, "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		measureDensity(t, "ferry", p.cmd.Process.Pid, addr, n, keepAlive)
		_ = p.cmd.Process.Kill()
		<-p.done

		if mosq != "" {
			stop := startMosquitto(t, mosq)
			measureDensity(t, "mosquitto", stop.pid, stop.addr, n, keepAlive)
			stop.kill()
		}
	}
}

// mosquittoProc is a Mosquitto started for a measurement.
type mosquittoProc struct {
	pid  int
	addr string
	kill func()
}

// startMosquitto starts Mosquitto on a free port of 127.0.0.1, without
// persistence or a connection limit, and waits until it listens.
func startMosquitto(t *testing.T, bin string) mosquittoProc {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(kill)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mosquitto did not listen")
		}
	}
	return mosquittoProc{pid: cmd.Process.Pid, addr: addr, kill: kill}
}

// measureDensity opens n idle MQTT connections to addr with keep alive
// keepAlive (a client with one has sent a PINGREQ) and logs the resident set
// of process pid before and after, then closes them.
func measureDensity(t *testing.T, name string, pid int, addr string, n int, keepAlive uint16) {
	t.Helper()
	time.Sleep(time.Second) // let the start settle
	before := residentBytes(t, pid)
	start := time.Now()
	conns := openIdle(t, addr, n, keepAlive)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Since(start)
	time.Sleep(3 * time.Second) // let the broker finish what each CONNECT started
	after := residentBytes(t, pid)
	kind := "keep alive 0"
	if keepAlive > 0 {
		kind = fmt.Sprintf("keep alive %d s, one PINGREQ sent", keepAlive)
	}
	t.Logf("%s: %d idle connections, %s (opened in %v): resident %.1f MiB before, %.1f MiB after: %.1f KiB per connection",
		name, n, kind, opened.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20),
		float64(after-before)/float64(n)/1024)
}

// openIdle opens n connections, each with a CONNECT (MQTT 3.1.1, clean
// session, keep alive keepAlive) answered by a CONNACK, and with a keep
// alive, a PINGREQ answered by a PINGRESP. Loopback addresses 127.0.0.1 to
// 127.0.0.16 are used in turn as sources, since one source address has
// fewer ephemeral ports than a large n needs.
func openIdle(t *testing.T, addr string, n int, keepAlive uint16) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+w))}}
			for i := w; i < n; i += workers {
				c, err := connectIdle(d, addr, fmt.Sprintf("idle-%d", i), keepAlive)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatal(firstErr)
	}
	return conns
}

func connectIdle(d net.Dialer, addr, id string, keepAlive uint16) (net.Conn, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepAlive >> 8), byte(keepAlive)}) // 3.1.1, clean session
	vh.Write([]byte{byte(len(id) >> 8), byte(len(id))})
	vh.WriteString(id)
	pkt := append([]byte{0x10, byte(vh.Len())}, vh.Bytes()...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x: refused", ack)
	}
	if keepAlive > 0 {
		var resp [2]byte
		if _, err := c.Write([]byte{0xc0, 0}); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := io.ReadFull(c, resp[:]); err != nil || resp[0] != 0xd0 {
			c.Close()
			return nil, fmt.Errorf("PINGRESP % x: %v", resp, err)
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// residentBytes is the resident set of process pid (VmRSS).
func residentBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
