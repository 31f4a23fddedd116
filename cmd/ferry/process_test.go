package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/internal/tlstest"
)

// TestBinary builds ferry and runs it as a real process.
func TestBinary(t *testing.T) {
	bin := buildFerry(t)

	t.Run("serve stops cleanly on SIGTERM", func(t *testing.T) {
		dataDir := filepath.Join(t.TempDir(), "data")
		p := startFerry(t, bin, "serve", "--data-dir", dataDir, "--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "off", "--http-addr", "127.0.0.1:0", "--log-format", "text")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not log that it is ready:\n%s", p.log())
		}
		if _, err := os.Stat(dataDir); err != nil {
			t.Errorf("data dir: %v", err)
		}
		// The broker registered with serve's NameServer: TBW102 is routable.
		m := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(p.log())
		if m == nil {
			t.Fatalf("no NameServer address logged:\n%s", p.log())
		}
		waitRoute(t, m[1], "TBW102")

		// The README's walkthrough: produce from stdin, consume with a group.
		produce := exec.Command(bin, "produce", "--namesrv", m[1], "--topic", "walkthrough", "--subject", "42/telemetry")
		produce.Stdin = strings.NewReader("one\ntwo\nthree\n")
		if out, err := produce.CombinedOutput(); err != nil {
			t.Fatalf("ferry produce: %v\n%s", err, out)
		}
		consume := exec.Command(bin, "consume", "--namesrv", m[1], "--topic", "walkthrough", "--group", "g", "--count", "3", "--log-level", "warn")
		var stderr bytes.Buffer
		consume.Stderr = &stderr
		out, err := consume.Output()
		if err != nil {
			t.Fatalf("ferry consume: %v\n%s", err, stderr.String())
		}
		if got := strings.Fields(string(out)); len(got) != 3 || !slices.Contains(got, "one") || !slices.Contains(got, "three") {
			t.Fatalf("ferry consume printed %q", out)
		}
		if out, err := exec.Command(bin, "group", "describe", "g", "--namesrv", m[1]).CombinedOutput(); err != nil || !regexp.MustCompile(`total lag +0\n`).Match(out) {
			t.Fatalf("ferry group describe: %v\n%s", err, out)
		}

		// A device over MQTT (mosquitto_pub, a client nobody here wrote),
		// a service through a consumer group.
		mqttAddr := regexp.MustCompile(`msg="mqtt: listening".*listener=tcp addr=(\S+)`).FindStringSubmatch(p.log())
		if pub, err := exec.LookPath("mosquitto_pub"); err == nil && mqttAddr != nil {
			host, port, _ := net.SplitHostPort(mqttAddr[1])
			if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "devices/42/telemetry", "-m", `{"t":21.5}`).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, out)
			}
			out, err := exec.Command(bin, "consume", "--namesrv", m[1], "--topic", "devices", "--group", "svc", "--filter", "+/telemetry",
				"--count", "1", "--log-level", "warn").Output()
			if err != nil || strings.TrimSpace(string(out)) != `{"t":21.5}` {
				t.Fatalf("ferry consume of the MQTT message: %v, %q", err, out)
			}
		} else if os.Getenv("CI") == "true" {
			t.Fatalf("mosquitto_pub missing (test.sh installs mosquitto-clients) or no MQTT address logged:\n%s", p.log())
		}

		// Operators see it: /metrics has every component's series.
		httpAddr := regexp.MustCompile(`msg="http listening".* addr=(\S+)`).FindStringSubmatch(p.log())
		if httpAddr == nil {
			t.Fatalf("no HTTP address logged:\n%s", p.log())
		}
		resp, err := http.Get("http://" + httpAddr[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"ferry_mqtt_received_total", "ferry_mqtt_connections"} {
			if !strings.Contains(string(metrics), name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code := p.wait(t, 2*stopTimeout)
		if code != 0 {
			t.Fatalf("exit code %d, want 0:\n%s", code, p.log())
		}
		if _, err := os.Stat(filepath.Join(dataDir, "clean")); err != nil {
			t.Errorf("no clean-shutdown marker after SIGTERM: %v", err)
		}
		if !strings.Contains(p.log(), `msg="ferry stopped"`) {
			t.Errorf("no stop logged:\n%s", p.log())
		}
	})

	t.Run("credentials on the native protocol, over TLS", func(t *testing.T) {
		dir := t.TempDir()
		cert, key, _ := tlstest.SelfSigned(t, dir)
		passwd := exec.Command(bin, "passwd", filepath.Join(dir, "passwd"), "alice", "--password", "secret", "--cost", "4")
		if out, err := passwd.CombinedOutput(); err != nil {
			t.Fatalf("ferry passwd: %v\n%s", err, out)
		}
		p := startFerryEnv(t, bin, []string{"FERRY_AUTH_PASSWORD_FILE=" + filepath.Join(dir, "passwd")},
			"serve", "--data-dir", filepath.Join(dir, "data"), "--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0",
			"--native-tls-cert", cert, "--native-tls-key", key, "--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		ns := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(p.log())[1]
		waitRoute(t, ns, "TBW102")
		produce := func(env []string, flags ...string) (string, error) {
			c := exec.Command(bin, append([]string{"produce", "--namesrv", ns, "--topic", "secured", "--log-level", "warn"}, flags...)...)
			c.Env = append(environWithoutFerry(), env...)
			c.Stdin = strings.NewReader("one\n")
			out, err := c.CombinedOutput()
			return string(out), err
		}
		if out, err := produce(nil, "--tls-ca", cert); err == nil || !strings.Contains(out, "anonymous access is not allowed") {
			t.Fatalf("produce without credentials: %v\n%s", err, out)
		}
		if out, err := produce([]string{"FERRY_USERNAME=alice", "FERRY_PASSWORD=secret"}, "--tls-ca", cert); err != nil {
			t.Fatalf("produce with credentials: %v\n%s", err, out)
		}
		if out, err := produce(nil, "--username", "alice", "--password", "secret"); err == nil {
			t.Fatalf("produce over plain TCP to a TLS listener succeeded:\n%s", out)
		}
	})

	t.Run("namesrv and broker apart", func(t *testing.T) {
		ns := startFerry(t, bin, "namesrv", "--namesrv-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if !ns.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry namesrv did not start:\n%s", ns.log())
		}
		nsAddr := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(ns.log())
		httpAddr := regexp.MustCompile(`msg="http listening".* addr=(\S+)`).FindStringSubmatch(ns.log())
		if nsAddr == nil || httpAddr == nil {
			t.Fatalf("no NameServer or HTTP address logged:\n%s", ns.log())
		}
		if !strings.Contains(ns.log(), `level=WARN msg="namesrv: no cluster secret: brokers may register only from loopback`) {
			t.Errorf("a NameServer without a cluster secret does not warn that it takes loopback brokers only:\n%s", ns.log())
		}
		broker := startFerry(t, bin, "broker", "--namesrv", nsAddr[1], "--data-dir", filepath.Join(t.TempDir(), "data"),
			"--native-addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !broker.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry broker did not start:\n%s", broker.log())
		}
		waitRoute(t, nsAddr[1], "TBW102") // the broker registered
		for path, want := range map[string]string{"/readyz": "ok", "/metrics": "ferry_namesrv_"} {
			resp, err := http.Get("http://" + httpAddr[1] + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("namesrv %s: %d, want 200 with %q in:\n%.500s", path, resp.StatusCode, want, body)
			}
		}
		for _, p := range []*ferryProc{broker, ns} {
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t, 2*stopTimeout); code != 0 {
				t.Fatalf("exit code %d, want 0:\n%s", code, p.log())
			}
		}
	})

	t.Run("namesrv and brokers apart with a cluster secret", func(t *testing.T) { testClusterSecret(t, bin) })

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port taken", []string{"serve", "--data-dir", t.TempDir(), "--namesrv-addr", taken.Addr().String(), "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "off", "--http-addr", "127.0.0.1:0"},
			"ferry: cannot start: namesrv: cannot listen on " + taken.Addr().String() + " (change it with --namesrv-addr)"},
		{"bad config", []string{"serve", "--flush", "bogus"}, `ferry: config: storage.flush "bogus"`},
		{"store cannot open", []string{"serve", "--data-dir", notADir(t), "--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "off", "--http-addr", "127.0.0.1:0"}, "ferry: cannot start: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startFerry(t, bin, tc.args...)
			if code := p.wait(t, time.Minute); code == 0 {
				t.Fatalf("exit code 0, want non-zero:\n%s", p.log())
			}
			// One clear line: the error, after at most the "starting" log line.
			lines := strings.Split(strings.TrimSpace(p.log()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, tc.want) {
				t.Fatalf("last line %q, want it to start with %q:\n%s", last, tc.want, p.log())
			}
			for _, l := range lines[:len(lines)-1] {
				if !strings.Contains(l, `msg="ferry starting"`) {
					t.Errorf("unexpected line before the error: %q", l)
				}
			}
		})
	}
}

// notADir returns a path that exists as a regular file.
func notADir(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ferryProc is a running ferry and what it has written to stderr.
type ferryProc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error

	mu      sync.Mutex
	stderr  bytes.Buffer
	changed chan struct{} // closed and replaced on every line
}

// waitRoute waits until the NameServer at ns has a route for topic.
func waitRoute(t *testing.T, ns, topic string) {
	t.Helper()
	a, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitForRoute(ctx, topic); err != nil {
		t.Fatal(err)
	}
}

func startFerry(t *testing.T, bin string, args ...string) *ferryProc {
	t.Helper()
	return startFerryEnv(t, bin, nil, args...)
}

// startFerryEnv is startFerry with env (KEY=value) added to its environment.
func startFerryEnv(t *testing.T, bin string, env []string, args ...string) *ferryProc {
	t.Helper()
	p := &ferryProc{cmd: exec.Command(bin, args...), done: make(chan struct{}), changed: make(chan struct{})}
	p.cmd.Dir = t.TempDir()
	// The AMQP listener's default port (5672) is a fixed one: off unless
	// the test asks for it (a flag or env wins over this).
	p.cmd.Env = append(append(environWithoutFerry(), "FERRY_AMQP_ADDR=off"), env...)
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *ferryProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitLog reports whether a line containing s is logged within timeout.
func (p *ferryProc) waitLog(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		found, changed := strings.Contains(p.stderr.String(), s), p.changed
		p.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-p.done:
			return strings.Contains(p.log(), s)
		case <-deadline:
			return false
		}
	}
}

// wait returns the exit code, failing the test if the process runs past timeout.
func (p *ferryProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("ferry still running after %v:\n%s", timeout, p.log())
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		t.Fatalf("wait: %v", p.waitErr)
	}
	return 0
}

// environWithoutFerry is the test's environment less FERRY_ variables, so the
// child sees only the flags the test gives.
func environWithoutFerry() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_") {
			env = append(env, kv)
		}
	}
	return env
}
