// Package plugin is how front-ends and bridges plug into a broker process:
// each one is a Plugin, registered from its own package's fx.go into the
// "plugins" value group; Module starts them, in order of their names,
// after the core (and the NameServer of the process) and stops them in
// reverse order before the core closes.
//
// The interface is small on purpose (mochi-mqtt's Hook and HookBase are the
// model): Start binds what the plug-in listens on or connects to and returns
// its error (a taken port stops the start with an error naming the flag);
// it does not serve: serving and reconnecting run on goroutines the plug-in
// owns and Stop stops and waits for. Optional capabilities are discovered
// by interface: a plug-in that also implements Checker is a readiness check
// of /readyz.
package plugin

import "context"

// Plugin is a front-end or a bridge of the broker process.
type Plugin interface {
	// Name names the plug-in in logs and in the readiness checks.
	Name() string
	// Start binds or connects, spawns what serves, and returns.
	Start(ctx context.Context) error
	// Stop stops what Start spawned and waits for it.
	Stop(ctx context.Context) error
}

// Checker is the optional capability of a plug-in whose health /readyz
// checks: Ready returns why it cannot serve, or nil.
type Checker interface {
	Ready() error
}

// Base is a plug-in that does nothing, to embed: a plug-in then defines
// only the methods it needs.
type Base struct{}

// Start does nothing.
func (Base) Start(context.Context) error { return nil }

// Stop does nothing.
func (Base) Stop(context.Context) error { return nil }

// Funcs makes a Plugin of a name and two functions, either of which may be
// nil; check, when set, makes it a Checker.
func Funcs(name string, start, stop func(context.Context) error, check func() error) Plugin {
	f := funcs{name: name, start: start, stop: stop}
	if check != nil {
		return checked{f, check}
	}
	return f
}

type funcs struct {
	name        string
	start, stop func(context.Context) error
}

func (f funcs) Name() string { return f.name }

func (f funcs) Start(ctx context.Context) error {
	if f.start == nil {
		return nil
	}
	return f.start(ctx)
}

func (f funcs) Stop(ctx context.Context) error {
	if f.stop == nil {
		return nil
	}
	return f.stop(ctx)
}

type checked struct {
	funcs
	check func() error
}

func (c checked) Ready() error { return c.check() }
