package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/monitor"
)

// The console takes the root page and its assets only: the routes of a
// part attached to the monitor (a replicated broker's serving half) and
// unknown paths are not shadowed.
func TestRoutesLeaveTheRestFree(t *testing.T) {
	mon, err := monitor.New(monitor.NewRegistry(), []monitor.Route{
		{Pattern: IndexPattern, Handler: Index()},
		{Pattern: "GET " + AssetPrefix, Handler: Assets()},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	detach, err := mon.Attach(monitor.NewRegistry(), []monitor.Route{{Pattern: "GET /bridges", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "[]") })}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	srv := httptest.NewServer(mon.Handler())
	defer srv.Close()
	for _, c := range []struct {
		path   string
		status int
		has    string
	}{
		{"/", 200, "<title>Ferry console</title>"},
		{"/console/app.js", 200, "X-Ferry-CSRF"},
		{"/console/style.css", 200, "--accent"},
		{"/bridges", 200, "[]"},
		{"/nothing", 404, ""},
		{"/console/nothing.js", 404, ""},
	} {
		res, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(string(body), c.has) {
			t.Errorf("GET %s: %d, want %d with %q", c.path, res.StatusCode, c.status, c.has)
		}
		if c.status == 200 && c.path != "/bridges" && !strings.Contains(res.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("GET %s: no CSP", c.path)
		}
	}
}
