package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/remoting"
)

// ferryCmd runs the ferry command in-process with stdin and returns stdout.
func ferryCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestPasswd adds users with ferry passwd, from stdin and from --password,
// replaces one, and checks the file with the auth package.
func TestPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	out, err := ferryCmd(t, "wonder\n", "passwd", "--cost", "4", file, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := "added user alice in " + file + "\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if _, err := ferryCmd(t, "", "passwd", "--cost=4", "--password", "builder", file, "bob"); err != nil {
		t.Fatal(err)
	}
	out, err = ferryCmd(t, "changed\r\nignored\n", "passwd", "--cost=4", file, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "replaced the password of user alice") {
		t.Errorf("output %q", out)
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}

	a, err := auth.New(auth.Config{PasswordFile: file})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, password string
		want           error
	}{
		{"alice", "changed", nil},
		{"alice", "wonder", auth.ErrBadCredentials},
		{"bob", "builder", nil},
		{"", "", auth.ErrAnonymousNotAllowed},
	} {
		if err := a.Authenticate(c.user, c.password); !errors.Is(err, c.want) {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", c.user, c.password, err, c.want)
		}
	}

	// --signing-key prints alice's key, the one her password derives.
	out, err = ferryCmd(t, "", "passwd", "--signing-key", file, "alice")
	if want := remoting.SigningKey("alice", "changed") + "\n"; err != nil || out != want {
		t.Errorf("--signing-key: %q, %v; want %q", out, err, want)
	}

	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"passwd", file, "carol"}, "no password"},
		{"\n", []string{"passwd", file, "carol"}, "no password"},
		{"x\n", []string{"passwd", "--cost=3", file, "carol"}, "--cost 3"},
		{"x\n", []string{"passwd", file, "a:b"}, "contains ':'"},
		{"x\n", []string{"passwd", file}, "accepts 2 arg(s)"},
		{"", []string{"passwd", "--signing-key", file, "carol"}, `no user "carol"`},
		{"", []string{"passwd", "--signing-key", "--password=x", file, "alice"}, "takes no --password"},
	} {
		if _, err := ferryCmd(t, c.stdin, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}

// TestAuthModule runs auth.Module with the configuration's auth section: the
// application starts, reloads a changed file, and stops its watcher.
func TestAuthModule(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if _, err := ferryCmd(t, "", "passwd", "--cost=4", "--password", "wonder", file, "alice"); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Auth.PasswordFile = file
	cfg.Auth.ReloadInterval = time.Millisecond
	var a *auth.Authenticator
	app := fx.New(
		fx.NopLogger,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		fx.Provide(authConfig),
		auth.Module,
		fx.Populate(&a),
	)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.AnonymousAllowed() {
		t.Error("anonymous allowed by default with a password file")
	}
	if _, err := ferryCmd(t, "", "passwd", "--cost=4", "--password", "builder", file, "bob"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Authenticate("bob", "builder") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not reload the password file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := app.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
