package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ferry cluster list against real processes: a broker with its native
// listener off registers under its name; two brokers with no name on one
// host (two data directories) get two names and both register; a restart
// keeps the recorded name.
func TestClusterListBinary(t *testing.T) {
	bin := buildFerry(t)
	ns := startFerry(t, bin, "namesrv", "--namesrv-addr", "127.0.0.1:0", "--http-addr", "off")
	if !ns.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry namesrv did not start:\n%s", ns.log())
	}
	nsAddr := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(ns.log())[1]
	broker := func(dir string, args ...string) (*ferryProc, string) {
		t.Helper()
		p := startFerry(t, bin, append([]string{"broker", "--namesrv", nsAddr, "--data-dir", dir,
			"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off"}, args...)...)
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry broker did not start:\n%s", p.log())
		}
		m := regexp.MustCompile(`msg="broker identity" .*broker=(\S+)`).FindStringSubmatch(p.log())
		if m == nil {
			t.Fatalf("the broker does not log its identity:\n%s", p.log())
		}
		return p, m[1]
	}
	// list runs ferry cluster list until its output satisfies ok.
	list := func(what string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := exec.Command(bin, "cluster", "list", "--namesrv", nsAddr, "--log-level", "warn").CombinedOutput()
			if err == nil && ok(string(out)) {
				return string(out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("ferry cluster list: %s: not within 30 s: %v\n%s", what, err, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	row := func(out, name string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[1] == name {
				return l
			}
		}
		return ""
	}

	solo, soloName := broker(filepath.Join(t.TempDir(), "solo"), "--native-addr", "off", "--broker-name", "solo", "--cluster", "east")
	if soloName != "solo" {
		t.Fatalf("configured name solo, logged %q", soloName)
	}
	out := list("the broker without a native listener", func(out string) bool { return row(out, "solo") != "" })
	if r := row(out, "solo"); !strings.HasPrefix(r, "east ") || !strings.Contains(r, " 0 ") || !strings.Contains(r, "master") ||
		!strings.Contains(r, "no native listener") || !strings.Contains(r, " ago") {
		t.Fatalf("the row of solo: %q\n%s", r, out)
	}

	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a, nameA := broker(dirA, "--native-addr", "127.0.0.1:0")
	_, nameB := broker(dirB, "--native-addr", "127.0.0.1:0")
	if nameA == nameB || !strings.HasPrefix(nameA, "broker-") || !strings.Contains(a.log(), "name_from=derived") {
		t.Fatalf("two brokers with no name: %q and %q, want two derived names:\n%s", nameA, nameB, a.log())
	}
	addrA := regexp.MustCompile(`msg="native protocol listening" addr=(\S+)`).FindStringSubmatch(a.log())[1]
	out = list("both unnamed brokers", func(out string) bool { return row(out, nameA) != "" && row(out, nameB) != "" })
	if r := row(out, nameA); !strings.HasPrefix(r, "DefaultCluster ") || !strings.Contains(r, addrA) || !strings.Contains(r, "1/1") {
		t.Fatalf("the row of %s: %q, want its address %s\n%s", nameA, r, addrA, out)
	}
	t.Logf("ferry cluster list:\n%s", out)
	waitRoute(t, nsAddr, "TBW102")

	// Stopped, it unregisters; restarted on its data, it is the same broker.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 2*stopTimeout); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, a.log())
	}
	list("the stopped broker gone", func(out string) bool { return row(out, nameA) == "" && row(out, nameB) != "" })
	again, nameAgain := broker(dirA, "--native-addr", "127.0.0.1:0")
	if nameAgain != nameA || !strings.Contains(again.log(), "name_from=recorded") {
		t.Fatalf("restarted on %s: %q, want the recorded %q:\n%s", dirA, nameAgain, nameA, again.log())
	}
	list("the restarted broker back", func(out string) bool { return row(out, nameA) != "" })
	for _, p := range []*ferryProc{solo, again} {
		if strings.Contains(p.log(), "level=ERROR") {
			t.Errorf("an error logged:\n%s", p.log())
		}
	}
}
