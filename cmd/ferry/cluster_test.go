package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
)

// ferry serve with no secret set draws one: its own broker registers, and
// nobody else can, not even from loopback.
func TestServeDrawsAClusterKey(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.NamesrvAddr, cfg.Native.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "off"
	cfg.MQTT.Addr, cfg.MQTT.WSAddr, cfg.MQTT.TLSAddr = "off", "off", "off"
	cfg.AMQP.Addr = "off"
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ns *namesrv.Server
	app := fx.New(appOptions(cfg, logger), fx.Populate(&ns))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := app.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	waitRoute(t, ns.Addr(), "TBW102") // serve's broker registered, signed

	c, err := remoting.Dial(ctx, ns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, err := namesrv.RegisterRequest(namesrv.Broker{Cluster: "DefaultCluster", Name: "intruder", Addr: "127.0.0.1:1"},
		[]remoting.TopicConfig{{TopicName: "TBW102", ReadQueueNums: 1, WriteQueueNums: 1, Perm: 6}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Invoke(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := remoting.ResponseError(resp); !errors.Is(err, remoting.ErrNoPermission) {
		t.Fatalf("an unsigned registration with serve's NameServer: %v, want NO_PERMISSION", err)
	}
	if st := ns.Stats(); st.Brokers != 1 {
		t.Fatalf("%d brokers registered, want serve's own", st.Brokers)
	}
}

func TestClusterSecretConfig(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("0123456789abcdef-cluster\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFile := config.Default()
	withFile.ClusterSecretFile = file
	withEnv := config.Default()
	withEnv.ClusterSecret = "0123456789abcdef-cluster"
	for _, cfg := range []config.Config{withFile, withEnv} {
		for name, opts := range map[string]fx.Option{
			"broker": brokerOptions(cfg, logger), "namesrv": namesrvOptions(cfg, logger), "serve": appOptions(cfg, logger),
		} {
			if err := fx.ValidateApp(opts); err != nil {
				t.Errorf("%s's fx graph with a secret: %v", name, err)
			}
		}
	}
	missing := config.Default()
	missing.ClusterSecretFile = filepath.Join(dir, "none")
	if err := fx.ValidateApp(namesrvOptions(missing, logger), fx.NopLogger); err == nil || !strings.Contains(err.Error(), "cluster-secret-file") {
		t.Errorf("a missing secret file: %v", err)
	}
	if _, err := config.Load(config.Sources{Environ: []string{"FERRY_CLUSTER_SECRET=short"}}); err == nil ||
		!strings.Contains(err.Error(), "cluster-secret: 5 bytes, want at least 16") || strings.Contains(err.Error(), "short") {
		t.Errorf("a short secret: %v", err)
	}
	if _, err := config.Load(config.Sources{Environ: []string{"FERRY_CLUSTER_SECRET=0123456789abcdef-cluster", "FERRY_CLUSTER_SECRET_FILE=" + file}}); err == nil {
		t.Error("both a secret and a secret file: accepted")
	}
}

// testClusterSecret runs ferry namesrv and ferry brokers apart with
// FERRY_CLUSTER_SECRET: a broker with the secret registers and routes; one
// with another secret, and one with a live broker's name, are refused and
// say so.
func testClusterSecret(t *testing.T, bin string) {
	const secret = "0123456789abcdef-cluster"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := startFerry(t, bin, "namesrv", "--namesrv-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--cluster-secret-file", file)
	if !ns.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry namesrv did not start:\n%s", ns.log())
	}
	if strings.Contains(ns.log(), "no cluster secret") || strings.Contains(ns.log(), secret) {
		t.Fatalf("the NameServer's log warns of no secret, or shows it:\n%s", ns.log())
	}
	nsAddr := regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(ns.log())[1]
	httpAddr := regexp.MustCompile(`msg="http listening".* addr=(\S+)`).FindStringSubmatch(ns.log())[1]
	broker := func(name string, env ...string) *ferryProc {
		p := startFerryEnv(t, bin, env, "broker", "--namesrv", nsAddr, "--data-dir", filepath.Join(t.TempDir(), "data"),
			"--broker-name", name, "--native-addr", "127.0.0.1:0", "--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry broker %s did not start:\n%s", name, p.log())
		}
		return p
	}
	a := broker("broker-a", "FERRY_CLUSTER_SECRET="+secret)
	waitRoute(t, nsAddr, "TBW102")
	aAddr := regexp.MustCompile(`msg="native protocol listening" addr=(\S+)`).FindStringSubmatch(a.log())[1]
	produce := exec.Command(bin, "produce", "--namesrv", nsAddr, "--topic", "routed", "--log-level", "warn")
	produce.Env = environWithoutFerry() // a client needs no secret: routes are open
	produce.Stdin = strings.NewReader("one\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("ferry produce through the NameServer: %v\n%s", err, out)
	}
	waitRoute(t, nsAddr, "routed")

	wrong := broker("broker-b", "FERRY_CLUSTER_SECRET=not-the-cluster-secret")
	if !wrong.waitLog("level=ERROR", 30*time.Second) || !strings.Contains(wrong.log(), "bad signature") {
		t.Fatalf("a broker with another secret does not log its refusal:\n%s", wrong.log())
	}
	twin := broker("broker-a", "FERRY_CLUSTER_SECRET="+secret)
	if !twin.waitLog("level=ERROR", 30*time.Second) || !strings.Contains(twin.log(), aAddr) || !strings.Contains(twin.log(), "--broker-name") {
		t.Fatalf("a second broker-a does not log its refusal naming the first's address %s and --broker-name:\n%s", aAddr, twin.log())
	}
	_, metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{`ferry_namesrv_brokers 1`, `ferry_namesrv_refused_total{reason="bad_signature"} `, `ferry_namesrv_refused_total{reason="conflict"} `} {
		if !strings.Contains(metrics, "\n"+want) || strings.Contains(metrics, "\n"+want+"0\n") {
			t.Errorf("namesrv /metrics: no %q, or zero", want)
		}
	}
	for _, p := range []*ferryProc{a, wrong, twin, ns} {
		if strings.Contains(p.log(), secret) {
			t.Errorf("a log shows the secret:\n%s", p.log())
		}
	}
}
