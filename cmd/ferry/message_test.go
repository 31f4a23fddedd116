package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ferry produce prints each message's msgId and offsetMsgId, and ferry
// message finds the message by either, and by key.
func TestMessageLookups(t *testing.T) {
	bin := buildFerry(t)
	p := startFerry(t, bin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "127.0.0.1:0",
		"--native-addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off", "--log-format", "text")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	ns := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(p.log())[1]
	waitRoute(t, ns, "TBW102")
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		c := exec.Command(bin, append(args, "--namesrv", ns, "--log-level", "warn")...)
		c.Env = environWithoutFerry()
		c.Stdin = strings.NewReader(stdin)
		out, err := c.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out) + string(ee.Stderr), err
		}
		return string(out), err
	}
	out, err := run("one\ntwo\n", "produce", "--topic", "looked", "--key", "k7")
	if err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	ids := strings.Fields(lines[0])
	if len(lines) != 2 || len(ids) != 2 || len(ids[1]) != 32 {
		t.Fatalf("produce printed %q, want a msgId and an offsetMsgId a message", out)
	}
	msgID, offsetMsgID := ids[0], ids[1]
	if out, err := run("", "message", "get", offsetMsgID); err != nil || !strings.Contains(out, `body         "one"`) ||
		!strings.Contains(out, "msgId        "+msgID) {
		t.Fatalf("message get %s: %v\n%s", offsetMsgID, err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // the key index follows the log
		out, err = run("", "message", "get", msgID, "--topic", "looked")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, "offsetMsgId  "+offsetMsgID) || strings.Contains(out, `"two"`) {
		t.Fatalf("message get %s --topic looked: %v\n%s", msgID, err, out)
	}
	if out, err := run("", "message", "find", "--topic", "looked", "--key", "k7"); err != nil ||
		!strings.Contains(out, `"one"`) || !strings.Contains(out, `"two"`) {
		t.Fatalf("message find: %v\n%s", err, out)
	}
	if out, err := run("", "message", "get", "nonsense"); err == nil || !strings.Contains(out, "--topic") {
		t.Fatalf("message get of no id: %v\n%s", err, out)
	}
}
