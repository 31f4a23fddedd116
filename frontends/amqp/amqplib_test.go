package amqp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAmqplib runs amqplib (npm), Node's AMQP client, through declare,
// bind, confirmed and mandatory publishes, get, nack with and without
// requeue, prefetch, consume, ack, dead-lettering and cancel
// (testdata/amqplib/client.js). amqplib is installed with npm ci into a
// temporary directory, at the version package-lock.json pins. Without node,
// npm or the npm registry it is skipped, unless CI is set: CI must run it.
func TestAmqplib(t *testing.T) {
	missing := func(format string, args ...any) {
		t.Helper()
		clientMissing(t, "amqplib", fmt.Sprintf(format, args...))
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed (apt-get install nodejs npm)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		missing("npm is not installed (apt-get install npm)")
	}
	dir := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json", "client.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "amqplib", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		missing("npm ci of amqplib failed (is the npm registry reachable?): %v\n%s", err, out)
	}

	f := startFerry(t, Config{})
	run := exec.CommandContext(ctx, node, "client.js", f.url)
	run.Dir = dir
	out, err := run.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("amqplib client: %v\n%s", err, out)
	}
}
