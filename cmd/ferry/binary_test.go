package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The ferry binary, built once for all the tests of this package that run
// it as a real process (removed by TestMain).
var ferryBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// buildFerry returns the path of the ferry binary, built on first use; it
// skips the test under -short.
func buildFerry(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ferryBin.once.Do(func() {
		if ferryBin.dir, ferryBin.err = os.MkdirTemp("", "ferry-bin-"); ferryBin.err != nil {
			return
		}
		ferryBin.path = filepath.Join(ferryBin.dir, "ferry")
		ferryBin.out, ferryBin.err = exec.Command("go", "build", "-o", ferryBin.path, ".").CombinedOutput()
	})
	if ferryBin.err != nil {
		t.Fatalf("go build: %v\n%s", ferryBin.err, ferryBin.out)
	}
	return ferryBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ferryBin.dir != "" {
		os.RemoveAll(ferryBin.dir)
	}
	os.Exit(code)
}
