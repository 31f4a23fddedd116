package namesrv

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrymq/ferry/remoting"
)

func TestMetrics(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	register := func(c *remoting.Client, addr string, topics ...string) {
		var tcs []remoting.TopicConfig
		for _, name := range topics {
			tcs = append(tcs, remoting.TopicConfig{TopicName: name, ReadQueueNums: 1, WriteQueueNums: 1, Perm: 6})
		}
		req, err := RegisterRequest(Broker{"c", "b-" + addr, 0, addr}, tcs)
		if err != nil {
			t.Fatal(err)
		}
		if err := remoting.ResponseError(invoke(t, c, req)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := dial(t, ln.Addr().String()), dial(t, ln.Addr().String())
	register(a, "127.0.0.1:1", "t1", "t2")
	register(b, "127.0.0.1:2", "t2", "t3")
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Brokers != 1 { // the closed connection's broker is dropped
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the broker of the closed connection is still there", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, line := range []string{
		`ferry_namesrv_brokers 1`,
		`ferry_namesrv_topics 2`,
		`ferry_namesrv_connections 1`,
		`ferry_namesrv_brokers_dropped_total{reason="closed"} 1`,
		`ferry_namesrv_brokers_dropped_total{reason="silent"} 0`,
		`ferry_namesrv_refused_total{reason="conflict"} 0`,
		`ferry_namesrv_connections_refused_total 0`,
		`ferry_namesrv_connections_closed_total{limit="first_request_timeout"} 0`,
		`ferry_namesrv_accept_errors_total 0`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no %q in\n%s", line, text)
		}
	}
}
