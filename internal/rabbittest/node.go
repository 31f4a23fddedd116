package rabbittest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// OwnNodeEnv, set to 1, says that the RabbitMQ at FERRY_TEST_AMQP_URL (or
// DefaultURL), which rabbitmqctl reaches without -n, is the tests' own:
// Node then lends it instead of starting one. Leave it unset on a machine
// whose RabbitMQ serves anything else.
const OwnNodeEnv = "FERRY_TEST_RABBITMQ_OWNED"

// A Node is a RabbitMQ a test may change for every client on it (raise an
// alarm, block publishers): one the test started itself, with its own node
// name, ports and data directory, so that a RabbitMQ serving other work on
// the same machine is left alone.
type Node struct {
	// URL is its AMQP URL, guest/guest.
	URL  string
	name string // "" for the shared node lent under OwnNodeEnv
	env  []string
	bin  string // the directory of rabbitmq-server and rabbitmqctl
}

// rabbitBins are where Debian's package puts the scripts that run as the
// calling user (/usr/sbin's wrappers switch to the rabbitmq user, whose
// Erlang cookie the test's rabbitmqctl would not have).
var rabbitBins = []string{"/usr/lib/rabbitmq/bin"}

// StartNode starts a RabbitMQ node of t's own and stops it when t ends. It
// skips t when rabbitmq-server is not installed, except under CI=true,
// where that is a failure. With FERRY_TEST_RABBITMQ_OWNED=1 it lends the
// shared RabbitMQ instead, held alone (Exclusive).
func StartNode(t testing.TB) *Node {
	t.Helper()
	if os.Getenv(OwnNodeEnv) == "1" {
		Exclusive(t)
		ctl, err := exec.LookPath("rabbitmqctl")
		if err != nil {
			ctl = "/usr/sbin/rabbitmqctl"
		}
		return &Node{URL: URL(t), bin: filepath.Dir(ctl)}
	}
	bin := ""
	for _, d := range rabbitBins {
		if _, err := os.Stat(filepath.Join(d, "rabbitmq-server")); err == nil {
			bin = d
		}
	}
	if bin == "" {
		missing(t, "rabbitmq-server is not installed (apt-get install rabbitmq-server): cannot start a RabbitMQ of the test's own")
	}
	dir, err := os.MkdirTemp("", "ferry-rabbitmq-")
	if err != nil {
		t.Fatal(err)
	}
	amqpPort, distPort := freePort(t), freePort(t)
	name := fmt.Sprintf("ferrytest-%d-%d@localhost", os.Getpid(), amqpPort)
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", amqpPort)
	for file, body := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[].\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := &Node{
		URL:  fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort),
		name: name,
		bin:  bin,
		env: append(os.Environ(),
			"HOME="+dir, // its Erlang cookie, shared with rabbitmqctl
			"RABBITMQ_NODENAME="+name,
			"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		),
	}
	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	server := exec.Command(filepath.Join(bin, "rabbitmq-server"))
	server.Env, server.Stdout, server.Stderr, server.Dir = n.env, out, out, dir
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its Erlang VM and epmd helpers with it
	if err := server.Start(); err != nil {
		t.Fatalf("rabbittest: start rabbitmq-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { server.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		n.ctl(30*time.Second, "stop") // a graceful stop; then make sure
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		conn, err := amqp.DialConfig(n.URL, amqp.Config{Dial: amqp.DefaultDial(time.Second)})
		if err == nil {
			conn.Close()
			return n
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "server.out"))
			t.Fatalf("rabbittest: rabbitmq-server %s exited before it answered:\n%s", name, tail(string(log), 40))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "server.out"))
			t.Fatalf("rabbittest: rabbitmq-server %s did not answer on %s within 90s:\n%s", name, n.URL, tail(string(log), 40))
		}
	}
}

// Ctl runs rabbitmqctl against the node with args and returns its output,
// trimmed; a failure fails t.
func (n *Node) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.ctl(30*time.Second, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (n *Node) ctl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if n.name != "" {
		args = append([]string{"-n", n.name}, args...)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "rabbitmqctl"), args...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// freePort is a TCP port free on the loopback interface just now, taken
// below Linux's ephemeral range (32768 and up): a port the kernel hands out
// for port 0 is soon another connection's local port, and RabbitMQ binds
// its ports seconds after they were picked.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("rabbittest: no free port in 20000-31999")
	return 0
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
