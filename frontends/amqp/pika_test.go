package amqp

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestPika runs a Python pika client (Debian's python3-pika) through
// declare, bind, confirmed and mandatory publishes, get, reject with
// requeue, prefetch and consume. Without pika it is skipped, unless CI is
// set: CI must run it.
func TestPika(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import pika").Run(); err != nil {
		clientMissing(t, "pika", fmt.Sprintf("python3-pika is not installed (apt-get install python3-pika): %v", err))
	}
	f := startFerry(t, Config{})
	host, port, _ := net.SplitHostPort(f.srv.Addrs()[0].String())
	out, err := exec.Command("/usr/bin/python3", "testdata/pika_client.py", host, port).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("pika client: %v\n%s", err, out)
	}
}
