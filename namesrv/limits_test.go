package namesrv

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// The NameServer takes its limits: a connection over its cap is closed at
// once, and counted in its metrics.
func TestConnectionLimit(t *testing.T) {
	s, addr := startServer(t, Options{Limits: remoting.Limits{MaxConns: 1}})
	c := dial(t, addr)
	if _, err := getRoute(t, c, "none"); err == nil {
		t.Fatal("a route for a topic no broker serves")
	}
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a connection over the cap: read %d, %v; want it closed", n, err)
	}
	if text := scrape(t, s, false); !strings.Contains(text, "ferry_namesrv_connections_refused_total 1\n") {
		t.Fatalf("no refusal counted in\n%s", text)
	}
	if err := s.AcceptErr(); err != nil {
		t.Fatalf("AcceptErr of a listener that accepts: %v", err)
	}
}
