package core

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestOneDoor keeps the core the only door to the store: no front-end or
// bridge imports package storage, in its code or its tests (which open
// their store through core/coretest). Everything beneath them (core)
// imports it, so the check is on their own imports.
func TestOneDoor(t *testing.T) {
	const storage = "github.com/ferrymq/ferry/storage"
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "../frontends/...", "../bridge/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for kind, imports := range map[string][]string{"code": p.Imports, "tests": p.TestImports, "external tests": p.XTestImports} {
			for _, imp := range imports {
				if imp == storage || strings.HasPrefix(imp, storage+"/") {
					t.Errorf("%s: its %s import %s; the core is the only door to the store (use core's API, and core/coretest in tests)", p.ImportPath, kind, imp)
				}
			}
		}
	}
	if n < 3 {
		t.Fatalf("go list found %d packages under frontends/ and bridge/; the check sees nothing", n)
	}
}
