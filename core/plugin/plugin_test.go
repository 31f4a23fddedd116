package plugin

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"

	"go.uber.org/fx"
)

// recorder is a plug-in that writes what it is asked to do into a shared
// log, and fails its Start when told.
type recorder struct {
	Base
	name string
	log  *[]string
	fail error
}

func (r recorder) Name() string { return r.name }

func (r recorder) Start(context.Context) error {
	*r.log = append(*r.log, "start "+r.name)
	return r.fail
}

func (r recorder) Stop(context.Context) error {
	*r.log = append(*r.log, "stop "+r.name)
	return nil
}

func app(t *testing.T, ps ...Plugin) *fx.App {
	t.Helper()
	var opts []fx.Option
	for _, p := range ps {
		opts = append(opts, fx.Supply(fx.Annotate(p, fx.As(new(Plugin)), fx.ResultTags(`group:"plugins"`))))
	}
	return fx.New(fx.NopLogger, fx.Supply(slog.New(slog.DiscardHandler)), fx.Options(opts...), Module)
}

// The plug-ins start in order of their names and stop in reverse.
func TestModuleOrder(t *testing.T) {
	var log []string
	a := app(t, recorder{name: "b", log: &log}, recorder{name: "a", log: &log}, recorder{name: "c", log: &log})
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}
}

// A plug-in that fails to start fails the start with its error, and those
// started before it are stopped.
func TestModuleStartError(t *testing.T) {
	var log []string
	boom := errors.New("cannot listen")
	a := app(t, recorder{name: "a", log: &log}, recorder{name: "b", log: &log, fail: boom}, recorder{name: "c", log: &log})
	if err := a.Start(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("start: %v, want %v", err, boom)
	}
	want := []string{"start a", "start b", "stop a"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("got %v, want %v", log, want)
	}
}

// Two plug-ins with one name are an error.
func TestNewRunnerDuplicate(t *testing.T) {
	if _, err := NewRunner([]Plugin{Funcs("x", nil, nil, nil), Funcs("x", nil, nil, nil)}); err == nil {
		t.Fatal("no error for two plug-ins named x")
	}
}

// Funcs is a Checker only when given a check.
func TestFuncsChecker(t *testing.T) {
	if _, ok := Funcs("x", nil, nil, nil).(Checker); ok {
		t.Fatal("Funcs without a check is a Checker")
	}
	c, ok := Funcs("x", nil, nil, func() error { return errors.New("down") }).(Checker)
	if !ok || c.Ready() == nil {
		t.Fatal("Funcs with a check is not a Checker reporting it")
	}
}
