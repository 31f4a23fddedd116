// Package examples holds runnable programs; this test builds each of them,
// so that an API change cannot leave one broken.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestExamplesBuild(t *testing.T) {
	mains, err := filepath.Glob("*/main.go")
	if err != nil || len(mains) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-o", out+string(filepath.Separator), "./...")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/...: %v\n%s", err, b)
	}
	for _, m := range mains {
		if _, err := os.Stat(filepath.Join(out, filepath.Base(filepath.Dir(m)))); err != nil {
			t.Errorf("example %s was not built: %v", filepath.Dir(m), err)
		}
	}
}
