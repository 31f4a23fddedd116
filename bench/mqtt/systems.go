package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// broker is one running broker process under test.
type broker struct {
	name string
	addr string // MQTT over TCP
	cmd  *exec.Cmd
	dir  string
	log  string        // its log file
	done chan struct{} // closed when the process has exited
	misc string        // a further address (the profiler's HTTP endpoint)
}

// freePort returns a loopback address with a port free right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startMosquitto starts mosquitto on a free port with its queue and
// inflight limits raised so that it drops nothing, and persistence off.
func startMosquitto(bin string) (*broker, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-mosquitto")
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := strings.Join([]string{
		"listener " + port + " 127.0.0.1",
		"allow_anonymous true",
		"persistence false",
		"max_connections -1",
		"max_queued_messages 0", // no limit
		"max_queued_bytes 0",    // no limit
		"max_inflight_messages 1024",
		"max_inflight_bytes 0",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"user root",
		"",
	}, "\n")
	return startConfigured("Mosquitto", bin, addr, dir, "mosquitto.conf", conf)
}

// startConfigured writes conf into dir as file and starts bin -c on it: a
// broker listening for MQTT on addr once it accepts connections.
func startConfigured(name, bin, addr, dir, file, conf string) (*broker, error) {
	confPath := filepath.Join(dir, file)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	b := &broker{name: name, addr: addr, dir: dir, log: filepath.Join(dir, "log")}
	if err := b.start(exec.Command(bin, "-c", confPath), nil); err != nil {
		return nil, err
	}
	if err := b.waitDial(); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// startNATS starts nats-server with JetStream (file storage, which its
// MQTT listener keeps sessions and QoS 1 messages in) and MQTT on a free
// port.
func startNATS(bin string) (*broker, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	client, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-nats")
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("listen: %q\nserver_name: bench\njetstream { store_dir: %q }\nmqtt { listen: %q }\nmax_connections: 1000000\n",
		client, filepath.Join(dir, "js"), addr)
	return startConfigured("NATS", bin, addr, dir, "nats.conf", conf)
}

var listenRe = regexp.MustCompile(`mqtt: listening.*listener=tcp addr=(\S+)`)
var pprofRe = regexp.MustCompile(`(?:pprof|http) listening.*addr=(\S+)`)

// startFerry starts bin (ferry serve, or the profiling server) with a
// temporary data directory and MQTT on a port of its choosing, read back
// from its log.
func startFerry(name, bin string, args ...string) (*broker, error) {
	dir, err := os.MkdirTemp("", "bench-ferry")
	if err != nil {
		return nil, err
	}
	b := &broker{name: name, dir: dir, log: filepath.Join(dir, "log")}
	args = append(args, "--data-dir", filepath.Join(dir, "data"))
	addrs := make(chan [2]string, 1)
	scan := func(line string) {
		if m := listenRe.FindStringSubmatch(line); m != nil {
			b.addr = strings.Trim(m[1], `"`)
		}
		if m := pprofRe.FindStringSubmatch(line); m != nil {
			b.misc = strings.Trim(m[1], `"`)
		}
		if b.addr != "" && strings.Contains(line, "ready") {
			select {
			case addrs <- [2]string{b.addr, b.misc}:
			default:
			}
		}
	}
	if err := b.start(exec.Command(bin, args...), scan); err != nil {
		return nil, err
	}
	select {
	case <-addrs:
	case <-b.done:
		return nil, fmt.Errorf("%s exited at start; log %s:\n%s", name, b.log, tail(b.log))
	case <-time.After(30 * time.Second):
		b.stop()
		return nil, fmt.Errorf("%s: no MQTT address logged in 30 s; log %s", name, b.log)
	}
	return b, b.waitDial()
}

// start runs cmd with its stderr and stdout going to b.log, each line
// passed to scan as well.
func (b *broker) start(cmd *exec.Cmd, scan func(string)) error {
	cmd = pinned(cmd)
	f, err := os.Create(b.log)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if scan != nil {
				scan(sc.Text())
			}
		}
		io.Copy(f, pr)
		f.Close()
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(b.done)
	}()
	return nil
}

func (b *broker) waitDial() error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", b.addr); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("%s: %s does not accept connections", b.name, b.addr)
}

// stop ends the process (SIGTERM, then SIGKILL after 20 s) and removes its
// directory.
func (b *broker) stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(20 * time.Second):
			b.cmd.Process.Kill()
			<-b.done
		}
	}
	os.RemoveAll(b.dir)
	// The file system's work for what the broker wrote and the removal
	// (journal commits, the discards of the freed blocks on a file system
	// mounted with discard) is done now, not during the next system's
	// round, whose fsyncs would wait behind it.
	syscall.Sync()
}

// rss returns the process's resident set size, in bytes.
func (b *broker) rss() (int64, error) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", b.cmd.Process.Pid)
}

// clockTicks is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTicks = 100

// cpu returns the CPU time (user and system) the process has used.
func (b *broker) cpu() (time.Duration, error) {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(s), ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", b.cmd.Process.Pid)
	}
	f := strings.Fields(string(s[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", b.cmd.Process.Pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of the file
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", b.cmd.Process.Pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
