package native

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrymq/ferry/remoting"
)

func TestMetrics(t *testing.T) {
	s, c := startServer(t, nil)
	if resp := call(t, c, sendV2("t", "a", []byte("x"), 0)); resp.Code != remoting.Success {
		t.Fatalf("send: %d %s", resp.Code, resp.Remark)
	}
	if resp := call(t, c, sendV2("bad topic", "a", []byte("x"), 0)); resp.Code == remoting.Success {
		t.Fatal("send to an invalid topic name succeeded")
	}
	if resp := call(t, c, remoting.NewRequest(9999, nil, nil)); resp.Code != remoting.RequestCodeNotSupported {
		t.Fatalf("unknown request: %d", resp.Code)
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
		`ferry_native_connections 1`,
		`ferry_native_connections_total 1`,
		`ferry_native_requests_total{request="send_message_v2"} 2`,
		`ferry_native_requests_total{request="other"} 1`,
		`ferry_native_requests_total{request="pull_message"} 0`,
		`ferry_native_errors_total{code="13",request="send_message_v2"} 1`,
		`ferry_native_errors_total{code="3",request="other"} 1`,
		`ferry_native_connections_refused_total 0`,
		`ferry_native_connections_closed_total{limit="idle_timeout"} 0`,
		`ferry_native_connections_closed_total{limit="max_frame"} 0`,
		`ferry_native_accept_errors_total 0`,
		`ferry_native_request_duration_seconds_count{request="send_message_v2"} 2`,
		`ferry_native_request_duration_seconds_count{request="other"} 1`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no %q in\n%s", line, text)
		}
	}
}
