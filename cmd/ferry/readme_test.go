package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/rabbittest"
)

// TestREADME runs the README's walkthrough as written: the shell commands of
// the fenced blocks marked `<!-- readme-test: run -->` (", rabbitmq" when
// they need RabbitMQ), in the README's order, and `ferry config check` on
// the YAML blocks marked `<!-- readme-test: config -->`. A command that does
// not work as written fails the test: fix the README, or Ferry.
//
// What the test changes, and only that:
//   - `go run ./cmd/ferry` is the binary buildFerry built (a `ferry` on
//     PATH), `go build -o X ./cmd/ferry` copies it to X, and
//     `go run ./PKG` runs PKG built from the repository.
//   - Ports. A test never binds fixed ones, so each of Ferry's that the
//     README names (9876, 10911, 1883, 8083, 8080, 5673) is a free port:
//     written in a command or in a file a command names (copied into the
//     working directory), it is rewritten; as a default, it is set through
//     FERRY_ variables (FERRY_NAMESRV_ADDR, FERRY_NAMESRV, FERRY_NATIVE_ADDR,
//     FERRY_MQTT_ADDR, FERRY_MQTT_WS_ADDR, FERRY_HTTP_ADDR) and, for
//     mosquitto_pub and mosquitto_sub, their options file ($XDG_CONFIG_HOME).
//     RabbitMQ's 5672 is not rewritten: the bridge part talks to the
//     RabbitMQ at 127.0.0.1:5672 (guest/guest) as the README says, and
//     Ferry's AMQP default is left alone, so a `serve` that would take
//     RabbitMQ's port fails here as it would for a reader.
//   - The commands run in a temporary directory, each in its own bash.
//
// How it runs them: a `ferry serve` runs in the background (the README's
// other terminal) until the next `serve`, which stops it first (the README
// says to), or the end; the test waits for /readyz before going on. So do a
// `ferry consume` without --count and a line ending in `&` with no `wait`
// after it in its block; a line ending in `&` and the lines up to a `wait`
// run as one script. The outputs the README shows are checked: in a
// command's comment, `prints A and B` (up to a `;`, quotes around one
// removed) are texts that must appear in its output, or in the output of a
// background command still running (the consumer, the MQTT subscriber),
// within a minute; a background command is waited for until they appear.
func TestREADME(t *testing.T) {
	bin := buildFerry(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(string(readme))
	for _, section := range []string{"Quick start", "Five minutes with Ferry", "Users and topic rules", "RabbitMQ bridges"} {
		found := false
		for _, b := range blocks {
			found = found || b.section == section
		}
		if !found {
			t.Errorf("README section %q has no block marked <!-- readme-test: … -->", section)
		}
	}
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing (test.sh installs mosquitto-clients and curl)", tool)
			}
			t.Skipf("%s missing: the README's walkthrough uses it (test.sh installs it)", tool)
		}
	}

	// The bridge part needs the RabbitMQ the README names.
	rabbit := ""
	t.Run("RabbitMQ", func(t *testing.T) { rabbit = rabbittest.URL(t) })
	if rabbit != "" {
		rabbit = rabbittest.URL(t) // held shared until the test ends
		if u, err := url.Parse(rabbit); err != nil || (u.Host != "127.0.0.1:5672" && u.Host != "localhost:5672") || u.User.String() != "guest:guest" {
			t.Logf("the README's bridge part talks to RabbitMQ at 127.0.0.1:5672 as guest/guest, FERRY_TEST_AMQP_URL is %s: its blocks are skipped", rabbit)
			rabbit = ""
		}
	}

	w := newWalk(t, bin)
	for _, b := range blocks {
		switch {
		case b.kind == "config":
			w.configCheck(b)
		case b.rabbitmq && rabbit == "":
			t.Logf("skipped (no RabbitMQ): the block of %q at README line %d", b.section, b.line)
		default:
			w.run(b)
		}
		if t.Failed() {
			return
		}
	}
	if rabbit != "" {
		// The durable queue the inbound bridge declared, which the README
		// says stays behind.
		_, ch := rabbittest.Channel(t, rabbit)
		if _, err := ch.QueueDelete("ferry-commands", false, false, false); err != nil {
			t.Errorf("delete queue ferry-commands: %v", err)
		}
	}
}

// A readmeBlock is a fenced block of the README marked for this test.
type readmeBlock struct {
	section  string // the "## " heading it is under
	line     int    // its first line in README.md, for messages
	kind     string // run or config
	rabbitmq bool   // it needs RabbitMQ
	lines    []string
}

var markRe = regexp.MustCompile(`^<!-- readme-test: (run|config)(, rabbitmq)? -->$`)

// readmeBlocks finds the marked blocks: the marker line, then a fence.
func readmeBlocks(readme string) []readmeBlock {
	var out []readmeBlock
	lines := strings.Split(readme, "\n")
	section := ""
	for i := 0; i < len(lines); i++ {
		if h, ok := strings.CutPrefix(lines[i], "## "); ok {
			section = h
		}
		m := markRe.FindStringSubmatch(lines[i])
		if m == nil || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			continue
		}
		b := readmeBlock{section: section, line: i + 3, kind: m[1], rabbitmq: m[2] != ""}
		for i += 2; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			b.lines = append(b.lines, lines[i])
		}
		out = append(out, b)
	}
	return out
}

// splitComment cuts a shell line at its comment: a # after a blank, outside quotes.
func splitComment(line string) (cmd, comment string) {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i]), line[i+1:]
		}
	}
	return strings.TrimSpace(line), ""
}

var printsRe = regexp.MustCompile(`prints ([^;]*)`)

// expectations are the texts a comment says the command prints.
func expectations(comment string) []string {
	var out []string
	for _, m := range printsRe.FindAllStringSubmatch(comment, -1) {
		for _, s := range strings.Split(strings.TrimSpace(m[1]), " and ") {
			if len(s) > 1 && s[0] == '"' && s[len(s)-1] == '"' {
				s = s[1 : len(s)-1]
			}
			out = append(out, s)
		}
	}
	return out
}

// readmePorts are Ferry's ports the README names.
var readmePorts = []string{"9876", "10911", "1883", "8083", "8080", "5673"}

// walk is the walkthrough's state: where it runs, its ports, what runs in
// the background.
type walk struct {
	t      *testing.T
	bin    string
	repo   string
	dir    string // the working directory of every command
	path   string // the directory of ferry and the go run programs, first on PATH
	env    []string
	ports  map[string]string // README port → free port
	portRe *regexp.Regexp

	serve *bgProc   // the running ferry serve
	bg    []*bgProc // everything started in the background
}

func newWalk(t *testing.T, bin string) *walk {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, bin: bin, repo: repo, dir: t.TempDir(), path: t.TempDir(), ports: map[string]string{}}
	for _, p := range readmePorts {
		w.ports[p] = freePort(t)
	}
	w.portRe = regexp.MustCompile(`:(` + strings.Join(readmePorts, "|") + `)\b`)
	if err := os.Symlink(bin, filepath.Join(w.path, "ferry")); err != nil {
		t.Fatal(err)
	}
	xdg := t.TempDir()
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if err := os.WriteFile(filepath.Join(xdg, tool), []byte("-p "+w.ports["1883"]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	local := func(p string) string { return "127.0.0.1:" + w.ports[p] }
	w.env = append(environWithoutFerry(),
		"PATH="+w.path+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XDG_CONFIG_HOME="+xdg,
		"FERRY_NAMESRV_ADDR="+local("9876"), "FERRY_NAMESRV="+local("9876"),
		"FERRY_NATIVE_ADDR="+local("10911"), "FERRY_MQTT_ADDR="+local("1883"),
		"FERRY_MQTT_WS_ADDR="+local("8083"), "FERRY_HTTP_ADDR="+local("8080"))
	t.Logf("README ports: %v", w.ports)
	t.Cleanup(w.stopAll)
	return w
}

// freePort is a port nothing listens on now.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// rewrite maps the README's ports onto the test's.
func (w *walk) rewrite(s string) string {
	return w.portRe.ReplaceAllStringFunc(s, func(m string) string {
		return ":" + w.ports[m[1:]]
	})
}

var (
	goRunFerry   = regexp.MustCompile(`\bgo run \./cmd/ferry\b`)
	goBuildFerry = regexp.MustCompile(`\bgo build -o (\S+) \./cmd/ferry\b`)
	goRunPkg     = regexp.MustCompile(`\bgo run \./(\S+)`)
)

// command is line as the test runs it: go commands onto built binaries,
// ports rewritten, and the repository's files it names copied into the
// working directory.
func (w *walk) command(line string) string {
	line = goRunFerry.ReplaceAllString(line, "ferry")
	line = goBuildFerry.ReplaceAllString(line, `cp "`+w.bin+`" $1`)
	line = goRunPkg.ReplaceAllStringFunc(line, func(m string) string {
		pkg := strings.TrimPrefix(m, "go run ./")
		out := filepath.Join(w.path, strings.ReplaceAll(pkg, "/", "-"))
		if _, err := os.Stat(out); err != nil {
			build := exec.Command("go", "build", "-o", out, "./"+pkg)
			build.Dir = w.repo
			if b, err := build.CombinedOutput(); err != nil {
				w.t.Fatalf("go build ./%s: %v\n%s", pkg, err, b)
			}
		}
		return out
	})
	for _, word := range strings.Fields(line) {
		if strings.HasPrefix(word, "/") || strings.HasPrefix(word, "-") {
			continue
		}
		src := filepath.Join(w.repo, word)
		if st, err := os.Stat(src); err != nil || !st.Mode().IsRegular() {
			continue
		}
		body, err := os.ReadFile(src)
		if err != nil {
			w.t.Fatal(err)
		}
		dst := filepath.Join(w.dir, word)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(w.rewrite(string(body))), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	return w.rewrite(line)
}

// run runs a block's commands in order.
func (w *walk) run(b readmeBlock) {
	t := w.t
	for i := 0; i < len(b.lines); i++ {
		cmd, comment := splitComment(b.lines[i])
		if cmd == "" {
			continue
		}
		want := expectations(comment)
		if strings.HasSuffix(cmd, "&") {
			// Up to a wait, one script; else a background command.
			end := -1
			for j := i + 1; j < len(b.lines); j++ {
				c, _ := splitComment(b.lines[j])
				if regexp.MustCompile(`(^|;\s*)wait$`).MatchString(c) {
					end = j
					break
				}
			}
			if end >= 0 {
				script := []string{cmd}
				for i++; i <= end; i++ {
					c, com := splitComment(b.lines[i])
					script = append(script, c)
					want = append(want, expectations(com)...)
				}
				i = end
				w.foreground(b, strings.Join(script, "\n"), want)
				continue
			}
			w.background(b, strings.TrimSpace(strings.TrimSuffix(cmd, "&")), want)
			continue
		}
		if strings.Contains(cmd, "ferry serve") || (strings.Contains(cmd, "ferry consume") && !strings.Contains(cmd, "--count")) {
			w.background(b, cmd, want)
			continue
		}
		w.foreground(b, cmd, want)
		if t.Failed() {
			return
		}
	}
}

// foreground runs script to its end and checks what it prints.
func (w *walk) foreground(b readmeBlock, script string, want []string) {
	t := w.t
	run := w.command(script)
	t.Logf("README line %d+ (%s): %s", b.line, b.section, run)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", "set -eo pipefail\n"+run)
	c.Dir, c.Env = w.dir, w.env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s\nfailed as the README writes it: %v\n%s\n%s", script, err, out, w.bgLogs())
	}
	for _, s := range want {
		if !w.waitOutput(s, out) {
			t.Fatalf("%s\ndid not print %q (the README says it does):\n%s\n%s", script, s, out, w.bgLogs())
		}
	}
}

// waitOutput reports whether s is in out or, within a minute, in the output
// of a background command still running.
func (w *walk) waitOutput(s string, out []byte) bool {
	deadline := time.Now().Add(time.Minute)
	for {
		if bytes.Contains(out, []byte(s)) {
			return true
		}
		for _, p := range w.bg {
			if !p.exited() && strings.Contains(p.output(), s) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// background starts cmd and leaves it running; a serve stops the one
// before and is waited for until ready.
func (w *walk) background(b readmeBlock, cmd string, want []string) {
	t := w.t
	isServe := strings.Contains(cmd, "ferry serve")
	if isServe && w.serve != nil {
		w.serve.stop(t)
		w.serve = nil
	}
	run := w.command(cmd)
	t.Logf("README line %d+ (%s), in the background: %s", b.line, b.section, run)
	p := startBg(t, w.dir, w.env, cmd, run)
	w.bg = append(w.bg, p)
	if isServe {
		w.serve = p
		w.waitReady(p)
	}
	for _, s := range want {
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(p.output(), s) {
			if p.exited() || time.Now().After(deadline) {
				t.Fatalf("%s\ndid not print %q (the README says it does):\n%s", cmd, s, p.output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitReady waits until serve answers /readyz.
func (w *walk) waitReady(p *bgProc) {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://127.0.0.1:" + w.ports["8080"] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() {
			w.t.Fatalf("%s\nexited:\n%s", p.readme, p.output())
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s\nnot ready after a minute:\n%s", p.readme, p.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// configCheck writes a YAML block to a file and has ferry config check it,
// with the variables it names for passwords set.
func (w *walk) configCheck(b readmeBlock) {
	file := filepath.Join(w.dir, fmt.Sprintf("readme-line-%d.yaml", b.line))
	body := strings.Join(b.lines, "\n") + "\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("README line %d+ (%s): ferry config check of the YAML block", b.line, b.section)
	c := exec.Command(w.bin, "config", "check", file)
	c.Dir, c.Env = w.dir, environWithoutFerry()
	for _, m := range regexp.MustCompile(`password-env: (\S+)`).FindAllStringSubmatch(body, -1) {
		c.Env = append(c.Env, m[1]+"=secret")
	}
	if out, err := c.CombinedOutput(); err != nil {
		w.t.Fatalf("ferry config check of the README's YAML at line %d (%s): %v\n%s\n%s", b.line, b.section, err, out, body)
	}
}

// bgLogs is the output of the background commands, for failure messages.
func (w *walk) bgLogs() string {
	var sb strings.Builder
	for _, p := range w.bg {
		fmt.Fprintf(&sb, "--- %s:\n%s\n", p.readme, p.output())
	}
	return sb.String()
}

func (w *walk) stopAll() {
	for i := len(w.bg) - 1; i >= 0; i-- {
		w.bg[i].stop(w.t)
	}
}

// bgProc is a command running in the background in a process group of its
// own, so that stopping it reaches what its bash started.
type bgProc struct {
	readme string // the command as the README writes it
	cmd    *exec.Cmd
	done   chan struct{}

	mu  sync.Mutex
	out bytes.Buffer
}

func startBg(t *testing.T, dir string, env []string, readme, run string) *bgProc {
	p := &bgProc{readme: readme, cmd: exec.Command("bash", "-c", run), done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		pr.Close()
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *bgProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *bgProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group as Ctrl-C would (SIGTERM), then kills it.
func (p *bgProc) stop(t *testing.T) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * stopTimeout):
		t.Errorf("%s: still running %v after SIGTERM:\n%s", p.readme, 2*stopTimeout, p.output())
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}
