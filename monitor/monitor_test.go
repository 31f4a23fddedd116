package monitor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServer(t *testing.T) {
	route := Route{Pattern: "GET /things", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `["a"]`)
	})}
	s, err := New(NewRegistry(), []Route{route}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + ln.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready: %d", code)
	}
	s.SetReady(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
	if code, body := get(t, base+"/things"); code != 200 || body != `["a"]` {
		t.Errorf("/things: %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, no go_goroutines", code)
	}
}

func TestDuplicateRoute(t *testing.T) {
	r := Route{Pattern: "GET /x", Handler: http.NotFoundHandler()}
	if _, err := New(NewRegistry(), []Route{r, r}, nil); err == nil || !strings.Contains(err.Error(), "/x") {
		t.Fatalf("two routes on one pattern: err %v", err)
	}
}

// A failing readiness check turns /readyz to 503, naming the check; it is
// ready again once the check passes.
func TestReadinessChecks(t *testing.T) {
	s, err := New(NewRegistry(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(context.Background()) })
	url := "http://" + ln.Addr().String() + "/readyz"
	var failing atomic.Bool
	s.AddReadinessCheck("native", func() error {
		if failing.Load() {
			return errors.New("accepting connections: too many open files")
		}
		return nil
	})
	s.AddReadinessCheck("namesrv", func() error { return nil })
	s.SetReady(true)
	if code, body := get(t, url); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz with passing checks: %d %q", code, body)
	}
	failing.Store(true)
	if code, body := get(t, url); code != http.StatusServiceUnavailable || body != "native: accepting connections: too many open files\n" {
		t.Fatalf("/readyz with a failing check: %d %q", code, body)
	}
	failing.Store(false)
	if code, _ := get(t, url); code != 200 {
		t.Fatalf("/readyz once the check passes again: %d", code)
	}
}

func TestAttach(t *testing.T) {
	s, err := New(NewRegistry(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	h := s.Handler()
	call := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	part := prometheus.NewRegistry()
	part.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "part_things_total", Help: "things"}))
	route := Route{Pattern: "GET /part", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "here") })}
	detach, err := s.Attach(part, []Route{route}, map[string]func() error{"part": func() error { return errors.New("not yet") }})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := call("/part"); code != 200 || body != "here" {
		t.Errorf("/part attached: %d %q", code, body)
	}
	if _, body := call("/metrics"); !strings.Contains(body, "part_things_total") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics attached lacks the part's or the process's metrics")
	}
	if code, body := call("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "part: not yet") {
		t.Errorf("/readyz attached: %d %q", code, body)
	}
	detach()
	if code, _ := call("/part"); code != http.StatusNotFound {
		t.Errorf("/part detached: %d", code)
	}
	if _, body := call("/metrics"); strings.Contains(body, "part_things_total") {
		t.Errorf("/metrics detached still has the part's metrics")
	}
	if code, _ := call("/readyz"); code != 200 {
		t.Errorf("/readyz detached: %d", code)
	}
}
