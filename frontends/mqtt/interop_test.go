package mqtt

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// needTool returns the path of a program a test needs: a skip when it is
// missing, a failure under CI=true (CI installs it).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (Debian package %s; test.sh installs it)", name, pkg)
		}
		t.Skipf("%s is not installed (Debian package %s)", name, pkg)
	}
	return p
}

// Clients nobody here wrote: mosquitto_pub and mosquitto_sub, MQTT 3.1.1
// and 5, QoS 0/1/2, against Ferry.
func TestMosquittoClients(t *testing.T) {
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	f := startFerry(t, t.TempDir(), Config{})
	host, port, _ := net.SplitHostPort(f.addr)

	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-q", "2", "-t", "interop/"+v+"/#", "-C", "3", "-v", "-i", "sub-"+v)
			s.Stdout, s.Stderr = &out, &errb
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !f.mqttSubscribed("sub-"+v) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			for q := range 3 {
				qs := string(rune('0' + q))
				if b, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", v, "-q", qs, "-t", "interop/"+v+"/q"+qs, "-m", "hello "+qs).CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub -q %s: %v\n%s", qs, err, b)
				}
			}
			if err := s.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v\n%s", err, errb.String())
			}
			// Three topics: MQTT orders messages per topic, not across them
			// (each is its own core queue), so the three may come in any order.
			got := strings.Split(strings.TrimSpace(out.String()), "\n")
			slices.Sort(got)
			want := []string{"interop/" + v + "/q0 hello 0", "interop/" + v + "/q1 hello 1", "interop/" + v + "/q2 hello 2"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
			}
		})
	}

	// MQTT 5 gets the reason a publish was refused; 3.1.1 a closed connection.
	b, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", "%reserved/x", "-m", "x").CombinedOutput()
	if !strings.Contains(strings.ToLower(string(b)), "failed: topic name invalid") {
		t.Fatalf("mosquitto_pub to an invalid topic over MQTT 5: err %v, output %q; want the reason", err, b)
	}
	if b, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-t", "%reserved/x", "-m", "x").CombinedOutput(); err == nil {
		t.Fatalf("mosquitto_pub to an invalid topic over MQTT 3.1.1 succeeded: %q", b)
	}
}

// mqttSubscribed reports whether client id has a session with subscriptions.
func (f *ferry) mqttSubscribed(id string) bool {
	f.mqtt.mu.Lock()
	ss := f.mqtt.sessions[id]
	f.mqtt.mu.Unlock()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.feeds) > 0
}
