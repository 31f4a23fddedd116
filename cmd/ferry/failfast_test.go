package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The client commands' mistakes are errors at once, naming the argument and
// what is allowed: consume of a missing topic (unless --wait), a bad
// --filter, topic create that would shrink a topic or make none.
func TestClientCommandsFailFast(t *testing.T) {
	bin := buildFerry(t)
	p := startFerry(t, bin, "serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--namesrv-addr", "127.0.0.1:0",
		"--native-addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--amqp-addr", "off", "--http-addr", "off",
		"--default-queues", "3")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	ns := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(p.log())[1]
	waitRoute(t, ns, "TBW102")
	run := func(timeout time.Duration, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c := exec.CommandContext(ctx, bin, append(args, "--namesrv", ns, "--log-level", "warn")...)
		c.Env = environWithoutFerry()
		out, err := c.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("ferry %s did not exit within %v:\n%s", strings.Join(args, " "), timeout, out)
		}
		return string(out), err
	}
	expectErr := func(want string, args ...string) {
		t.Helper()
		out, err := run(10*time.Second, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("ferry %s: %v, want an error with %q:\n%s", strings.Join(args, " "), err, want, out)
		}
	}
	expectOut := func(want string, args ...string) {
		t.Helper()
		out, err := run(10*time.Second, args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("ferry %s: %v, want %q:\n%s", strings.Join(args, " "), err, want, out)
		}
	}

	expectErr("--topic nowhere: no such topic", "consume", "--topic", "nowhere", "--group", "g")
	expectErr("give --wait to wait for it", "consume", "--topic", "nowhere", "--group", "g")
	expectErr(`--filter "a/#/b": route: invalid filter "a/#/b": '#' must be the last level`,
		"consume", "--topic", "nowhere", "--group", "g", "--filter", "a/#/b")

	expectErr("--queues 0: want 1..1024", "topic", "create", "r", "--queues", "0")
	expectErr("--queues -2: want 1..1024", "topic", "create", "r", "--queues", "-2")
	expectOut("created r with 4 queues on ", "topic", "create", "r", "--queues", "4")
	expectErr("--queues 2: topic r has 4 queues on ", "topic", "create", "r", "--queues", "2")
	expectErr("give --queues 4 or more", "topic", "create", "r", "--queues", "2")
	expectOut("r has 4 queues already on ", "topic", "create", "r", "--queues", "4")
	expectOut("r has 4 queues already on ", "topic", "create", "r")
	expectOut("r grew from 4 to 6 queues on ", "topic", "create", "r", "--queues", "6")
	expectOut("created d with 3 queues on ", "topic", "create", "d") // the broker's core.default-queues

	// --wait waits for the topic, then consumes it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := exec.CommandContext(ctx, bin, "consume", "--topic", "later", "--group", "g", "--wait", "--count", "1",
		"--namesrv", ns, "--log-level", "warn")
	wait.Env = environWithoutFerry()
	var stdout, stderr lockedBuffer
	wait.Stdout, wait.Stderr = &stdout, &stderr
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "waiting for topic later") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	expectOut("", "produce", "--topic", "later", "hello")
	if err := wait.Wait(); err != nil || stdout.String() != "hello\n" {
		t.Fatalf("consume --wait: %v, printed %q\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "waiting for topic later to be created") {
		t.Fatalf("consume --wait did not say it waits:\n%s", stderr.String())
	}
}
