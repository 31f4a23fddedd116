// Package browsertest drives Ferry's web console in a real browser
// (Debian's chromium, through chromedp) against the real ferry binary: an
// operator's day, from logging in to being refused a change. It saves a
// screenshot of each page into docs/console/. A module of its own, so that
// Ferry's main module does not depend on chromedp.
package browsertest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/client"
)

// shots is where the screenshots go: the repository's docs/console/.
const shots = "../../docs/console"

const acl = `
user alice
admin
topic readwrite #

user bob
topic read #
group join shop
`

// chromium is the browser's path; the test skips without one unless CI=true.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: install Debian's chromium (test.sh does)")
	}
	t.Skip("no chromium on PATH: apt-get install chromium to run the console's browser test")
	return ""
}

// ferry is a running ferry serve.
type ferry struct {
	http, namesrv, mqtt string
}

// startFerry builds the binary and runs ferry serve with a password file
// and an ACL on ports the system picks.
func startFerry(t *testing.T) ferry {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, u := range []string{"alice", "bob"} {
		if out, err := exec.Command(bin, "passwd", filepath.Join(dir, "passwd"), u, "--password", u+"-secret", "--cost", "4").CombinedOutput(); err != nil {
			t.Fatalf("ferry passwd: %v\n%s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("auth:\n  password-file: %s\n  acl-file: %s\n", filepath.Join(dir, "passwd"), filepath.Join(dir, "acl"))
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "ferry.yaml"), "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--namesrv-addr", "127.0.0.1:0",
		"--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "off", "--amqp-addr", "off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := regexp.MustCompile(`msg="(http|namesrv) listening" addr=(\S+)`)
	mqttAddr := regexp.MustCompile(`msg="mqtt: listening" .*listener=tcp addr=(\S+)`)
	found := make(chan ferry, 1)
	go func() {
		var f ferry
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if testing.Verbose() {
				t.Log(line)
			}
			if m := addr.FindStringSubmatch(line); m != nil {
				if m[1] == "http" {
					f.http = m[2]
				} else {
					f.namesrv = m[2]
				}
			}
			if m := mqttAddr.FindStringSubmatch(line); m != nil {
				f.mqtt = m[1]
			}
			if strings.Contains(line, "ferry ready") {
				found <- f
			}
		}
	}()
	select {
	case f := <-found:
		return f
	case <-time.After(60 * time.Second):
		t.Fatal("ferry did not start within 60 s")
	}
	return ferry{}
}

func TestConsoleInBrowser(t *testing.T) {
	exe := chromium(t)
	f := startFerry(t)
	base := "http://" + f.http
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	started := false
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx := ctx
		if started { // not the first run: its context is the browser's life
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(ctx, 45*time.Second)
			defer cancel()
		}
		started = true
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	// waitText waits until the text of the element sel selects satisfies
	// ok (the page re-renders as it polls: the element is looked up anew
	// each time).
	waitText := func(sel string, ok func(string) bool) chromedp.Action[chromedp.Void] {
		js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent.trim() : "(none)"; })()`, sel)
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			last := ""
			for {
				s, err := chromedp.Evaluate[string](js)(ctx, tg)
				if err == nil && s != "(none)" && ok(s) {
					return nil
				}
				last = s
				select {
				case <-ctx.Done():
					return fmt.Errorf("waiting for %s (last text %q): %w", sel, last, ctx.Err())
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
	login := func(user string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.CSS("#login-form")),
			chromedp.SendKeys(chromedp.CSS("#login-user"), user),
			chromedp.SendKeys(chromedp.CSS("#login-password"), user+"-secret"),
			chromedp.Click(chromedp.CSS("#login-submit")),
			waitText("#who", func(s string) bool { return strings.HasPrefix(s, user) }),
		)
	}

	// Log in; the overview.
	run("login page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")), shot("login"))
	run("log in as alice", login("alice"), waitText("#ov-role", func(s string) bool { return s == "standalone" }))

	// Create a topic.
	run("create a topic",
		chromedp.Navigate(base+"/#/topics"),
		chromedp.WaitVisible(chromedp.CSS("#topic-name")),
		chromedp.SendKeys(chromedp.CSS("#topic-name"), "orders"),
		chromedp.SetValue(chromedp.CSS("#topic-queues"), "2"),
		chromedp.Click(chromedp.CSS("#topic-create")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-topic="orders"]`)))

	// Send messages with the SDK: one to find, one that fails, a backlog.
	creds := client.WithCredentials("alice", "alice-secret")
	p, err := client.NewProducer(client.WithNameServers(f.namesrv), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(m *client.Message) client.SendResult {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		r, err := p.Send(sctx, m)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		return r
	}
	found := send(&client.Message{Topic: "orders", Tag: "eu", Keys: []string{"order-42"}, Properties: map[string]string{"customer": "ada"}, Body: []byte(`{"order":42,"total":"12.50"}`)})
	poison := send(&client.Message{Topic: "orders", Tag: "eu", Keys: []string{"order-poison"}, Body: []byte("not json")})
	for i := range 30 {
		send(&client.Message{Topic: "orders", Tag: "eu", Keys: []string{fmt.Sprintf("order-%d", 100+i)}, Body: []byte(fmt.Sprintf(`{"order":%d}`, 100+i))})
	}
	run("overview with traffic", chromedp.Navigate(base+"/#/overview"), waitText("#ov-topics", func(s string) bool { return s == "1" }),
		chromedp.Sleep(4*time.Second), shot("overview"))
	run("topics page", chromedp.Navigate(base+"/#/topics"), waitText(`tr[data-topic="orders"] td:nth-child(4)`, func(s string) bool { return s == "32" }), shot("topics"))
	run("topic page", chromedp.Navigate(base+"/#/topics/orders"), chromedp.WaitVisible(chromedp.CSS("#topic-queues")),
		chromedp.SetValue(chromedp.CSS("#browse-max"), "3"),
		chromedp.Click(chromedp.CSS("#browse-go")), chromedp.WaitVisible(chromedp.CSS("#browse-results .msg")), shot("topic"))

	// Find the message by the id the producer got, and by its key.
	run("find by id",
		chromedp.Navigate(base+"/#/messages"),
		chromedp.WaitVisible(chromedp.CSS("#msg-id")),
		chromedp.SendKeys(chromedp.CSS("#msg-id"), found.MsgID),
		chromedp.Click(chromedp.CSS("#msg-id-go")),
		waitText("#msg-results .msg-producer-id", func(s string) bool { return s == found.MsgID }),
		waitText("#msg-results .msg-keys", func(s string) bool { return s == "order-42" }),
		waitText("#msg-results pre.body", func(s string) bool { return strings.Contains(s, `"order":42`) }))
	run("find by key",
		chromedp.SendKeys(chromedp.CSS("#msg-key"), "order-42"),
		chromedp.SendKeys(chromedp.CSS("#msg-key-topic"), "orders"),
		chromedp.Click(chromedp.CSS("#msg-key-go")),
		waitText("#msg-results .msg-producer-id", func(s string) bool { return s == found.MsgID }),
		waitText("#msg-results .msg-subject", func(s string) bool { return s == "eu" }),
		shot("messages"))

	// A consumer group works through the backlog; the poison message is
	// dead-lettered after one retry in place.
	var failPoison atomic.Bool
	failPoison.Store(true)
	var poisonOK atomic.Int32
	var mu sync.Mutex
	c, err := client.NewPushConsumer("shop", client.WithNameServers(f.namesrv), creds, client.WithOrdered(), client.WithMaxRetries(1),
		client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Subscribe("orders", "*", func(_ context.Context, m *client.MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Body) == "not json" {
			if failPoison.Load() {
				return fmt.Errorf("order is not JSON: %q", m.Body)
			}
			poisonOK.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	consumerStopped := false
	defer func() {
		if !consumerStopped {
			c.Close()
		}
	}()
	run("lag falls to 0",
		chromedp.Navigate(base+"/#/groups/shop"),
		waitText("#group-lag", func(s string) bool { return s == "0" }),
		chromedp.WaitVisible(chromedp.CSS(`#dlq-table tr[data-dead="0"]`)),
		waitText(`#dlq-table tr[data-dead="0"] .dlq-reason`, func(s string) bool { return strings.Contains(s, "attempts") }), // a native consumer's send-back carries no error text
		chromedp.Sleep(2*time.Second),
		shot("group"))
	run("groups page", chromedp.Navigate(base+"/#/groups"), chromedp.WaitVisible(chromedp.CSS(`tr[data-group="shop"]`)), shot("groups"))

	// Resend the dead letter: the consumer, now fixed, takes it.
	failPoison.Store(false)
	run("resend the dead letter",
		chromedp.Navigate(base+"/#/groups/shop"),
		chromedp.WaitVisible(chromedp.CSS(`button[data-resend="0"]`)),
		chromedp.Click(chromedp.CSS(`button[data-resend="0"]`)),
		waitText("#flash", func(s string) bool { return strings.Contains(s, "Resent 1 dead letter") }))
	deadline := time.Now().Add(30 * time.Second)
	for poisonOK.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the resent message %s never reached the consumer", poison.MsgID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	run("lag back to 0", waitText("#group-lag", func(s string) bool { return s == "0" }))

	// Reset the group's offsets to the first message, its consumer stopped.
	c.Close()
	consumerStopped = true
	run("reset offsets",
		chromedp.Navigate(base+"/#/groups/shop"),
		waitText("#group-lag", func(s string) bool { return s == "0" }),
		chromedp.SetValue(chromedp.CSS("#reset-to"), "first"),
		chromedp.Click(chromedp.CSS("#reset-go")),
		waitText("#flash", func(s string) bool { return strings.Contains(s, "reset to first") }),
		waitText("#group-lag", func(s string) bool { return s == "33" }),
		chromedp.Sleep(2*time.Second),
		shot("group-reset"))

	// An MQTT device connected: listed, then disconnected from the page.
	lost := make(chan error, 1)
	device := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + f.mqtt).SetClientID("sensor-7").
		SetUsername("alice").SetPassword("alice-secret").SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err }))
	if tok := device.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT connect to %s: %v", f.mqtt, tok.Error())
	}
	defer device.Disconnect(0)
	if tok := device.Subscribe("orders/eu", 1, func(mqtt.Client, mqtt.Message) {}); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT subscribe: %v", tok.Error())
	}
	// The page asks before it disconnects: the dialog is accepted.
	dialogs := make(chan string, 1)
	go func() {
		for ev, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			select {
			case dialogs <- ev.Message:
			default:
			}
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	run("MQTT clients page",
		chromedp.Navigate(base+"/#/clients"),
		waitText(`tr[data-client="sensor-7"] td:nth-child(2)`, func(s string) bool { return s == "alice" }),
		waitText(`tr[data-client="sensor-7"] td:nth-child(6)`, func(s string) bool { return s == "1" }),
		chromedp.WaitNotVisible(chromedp.CSS("#flash")), // the reset's message, from the page before
		shot("clients"))
	run("disconnect the MQTT client",
		chromedp.Click(chromedp.CSS(`button[data-kick="sensor-7"]`)),
		waitText("#flash", func(s string) bool { return strings.Contains(s, "MQTT client sensor-7 disconnected") }),
		waitText("#clients-table", func(s string) bool { return !strings.Contains(s, "sensor-7") }))
	select {
	case msg := <-dialogs:
		if msg != "Disconnect MQTT client sensor-7?" {
			t.Errorf("the page asked %q before disconnecting", msg)
		}
	default:
		t.Error("the page disconnected the client without asking")
	}
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("the MQTT client disconnected from the console still has its connection")
	}

	run("bridges page", chromedp.Navigate(base+"/#/bridges"), waitText("#bridges-table", func(s string) bool { return strings.Contains(s, "No bridges") }))

	// Bob reads but may not change: his change is refused.
	run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	run("bob is refused",
		login("bob"),
		chromedp.Navigate(base+"/#/topics"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-topic="orders"]`)),
		chromedp.SendKeys(chromedp.CSS("#topic-name"), "bobs-topic"),
		chromedp.Click(chromedp.CSS("#topic-create")),
		waitText("#flash", func(s string) bool { return strings.Contains(s, "user bob may not create topic bobs-topic") }),
		shot("refused"))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('tr[data-topic="bobs-topic"]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatal("bob's refused topic is listed")
	}
}
