package namesrv

import (
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

// scrape is s's metrics as a Prometheus scrape serves them; lint, when
// set, fails the test on what the registry's linter finds in them.
func scrape(t *testing.T, s *Server, lint bool) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	if lint {
		if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Fatalf("lint: %v %v", problems, err)
		}
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	s, addr := startServer(t, Options{})
	register := func(c *remoting.Client, addr string, topics ...string) {
		var tcs []remoting.TopicConfig
		for _, name := range topics {
			tcs = append(tcs, remoting.TopicConfig{TopicName: name, ReadQueueNums: 1, WriteQueueNums: 1, Perm: 6})
		}
		req, err := RegisterRequest(Broker{Cluster: "c", Name: "b-" + addr, Addr: addr}, tcs)
		if err != nil {
			t.Fatal(err)
		}
		if err := remoting.ResponseError(invoke(t, c, req)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := dial(t, addr), dial(t, addr)
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

	text := scrape(t, s, true)
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
