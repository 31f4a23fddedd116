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
// connection. The test opens FERRY_MQTT_DENSITY idle connections (TCP, a
// CONNECT, its CONNACK, then nothing: keep alive 0) to the real binary, and
// to Mosquitto when it is installed, and logs each broker's resident set
// before and after and the difference per connection. It is a measurement,
// not a timed test: it asserts only that every connection was accepted,
// and runs only when asked, since it needs a file descriptor per
// connection (it raises its limit, which takes root past the hard one):
//
//	FERRY_MQTT_DENSITY=10000 go test -run TestMQTTIdleConnectionDensity -v ./cmd/ferry/
func TestMQTTIdleConnectionDensity(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FERRY_MQTT_DENSITY"))
	if n <= 0 {
		t.Skip("set FERRY_MQTT_DENSITY to the number of idle connections to open")
	}
	bin := buildFerry(t)
	want := uint64(n + 1024)
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

	addr := freeAddr(t)
	p := startFerry(t, bin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "off",
		"--native-addr", "off", "--mqtt-addr", addr, "--mqtt-ws-addr", "off", "--http-addr", "off")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	measureDensity(t, "ferry", p.cmd.Process.Pid, addr, n)

	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		mosq = "/usr/sbin/mosquitto"
		if _, err := os.Stat(mosq); err != nil {
			t.Log("mosquitto is not installed: no comparison")
			return
		}
	}
	addr = freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mosq, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mosquitto did not listen")
		}
	}
	measureDensity(t, "mosquitto", cmd.Process.Pid, addr, n)
}

// measureDensity opens n idle MQTT connections to addr and logs the
// resident set of process pid before and after, then closes them.
func measureDensity(t *testing.T, name string, pid int, addr string, n int) {
	t.Helper()
	time.Sleep(time.Second) // let the start settle
	before := residentBytes(t, pid)
	start := time.Now()
	conns := openIdle(t, addr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	opened := time.Since(start)
	time.Sleep(3 * time.Second) // let the broker finish what each CONNECT started
	after := residentBytes(t, pid)
	t.Logf("%s: %d idle connections (opened in %v): resident %.1f MiB before, %.1f MiB after: %.1f KiB per connection",
		name, n, opened.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20),
		float64(after-before)/float64(n)/1024)
}

// openIdle opens n connections, each with a CONNECT (MQTT 3.1.1, clean
// session, keep alive 0) answered by a CONNACK. Loopback addresses
// 127.0.0.1 to 127.0.0.16 are used in turn as sources, since one source
// address has fewer ephemeral ports than a large n needs.
func openIdle(t *testing.T, addr string, n int) []net.Conn {
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
				c, err := connectIdle(d, addr, fmt.Sprintf("idle-%d", i))
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

func connectIdle(d net.Dialer, addr, id string) (net.Conn, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0}) // 3.1.1, clean session, keep alive 0
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
