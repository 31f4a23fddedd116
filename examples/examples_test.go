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
	dirs, err := filepath.Glob("*/main.go")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	out := t.TempDir()
	for _, m := range dirs {
		dir := filepath.Dir(m)
		t.Run(dir, func(t *testing.T) {
			cmd := exec.Command("go", "build", "-o", filepath.Join(out, dir), "./"+dir)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build ./examples/%s: %v\n%s", dir, err, b)
			}
		})
	}
}
