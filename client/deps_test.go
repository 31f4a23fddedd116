package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSDKStandsAlone: the SDK depends on wire packages only, never on a
// server package, nor on what servers are built with (fx, dig, Prometheus):
// a program that uses it carries none of them.
func TestSDKStandsAlone(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/ferrymq/ferry/client":           true,
		"github.com/ferrymq/ferry/remoting":         true,
		"github.com/ferrymq/ferry/internal/lograte": true,
		"github.com/ferrymq/ferry/internal/rawio":   true,
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "go.uber.org/fx"), strings.HasPrefix(dep, "go.uber.org/dig"),
			strings.HasPrefix(dep, "github.com/prometheus/"):
			t.Errorf("the SDK depends on %s", dep)
		case strings.HasPrefix(dep, "github.com/ferrymq/ferry/") && !allowed[dep]:
			t.Errorf("the SDK depends on the server package %s", dep)
		}
	}
}
