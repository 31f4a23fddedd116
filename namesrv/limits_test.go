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

	"github.com/ferrymq/ferry/remoting"
)

// The NameServer takes its limits: a connection over its cap is closed at
// once, and counted in its metrics.
func TestConnectionLimit(t *testing.T) {
	s := New(Options{Limits: remoting.Limits{MaxConns: 1}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	c := dial(t, ln.Addr().String())
	if _, err := getRoute(t, c, "none"); err == nil {
		t.Fatal("a route for a topic no broker serves")
	}
	over, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a connection over the cap: read %d, %v; want it closed", n, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "ferry_namesrv_connections_refused_total 1\n") {
		t.Fatalf("no refusal counted in\n%s", rec.Body.String())
	}
	if err := s.AcceptErr(); err != nil {
		t.Fatalf("AcceptErr of a listener that accepts: %v", err)
	}
}
