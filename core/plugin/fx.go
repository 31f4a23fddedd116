package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"go.uber.org/fx"
)

// Module runs the application's plug-ins (the "plugins" value group): it
// starts them in order of their names and stops them in reverse order. A
// plug-in that fails to start stops the application's start with its
// error; the plug-ins already started are stopped. Its *Runner is what a
// component that must start after the plug-ins depends on (the cluster's
// registrar registers the address the native front-end bound).
var Module = fx.Module("plugins", fx.Provide(newFromFx), fx.Invoke(func(*Runner) {}))

// Runner holds the application's plug-ins, in start order.
type Runner struct {
	list []Plugin
}

// Plugins are the plug-ins in start order.
func (r *Runner) Plugins() []Plugin { return r.list }

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Logger    *slog.Logger
	Plugins   []Plugin `group:"plugins"`
}

func newFromFx(p params) (*Runner, error) {
	r, err := NewRunner(p.Plugins)
	if err != nil {
		return nil, err
	}
	var started int
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			for _, pl := range r.list {
				if err := pl.Start(ctx); err != nil {
					for i := started - 1; i >= 0; i-- {
						_ = r.list[i].Stop(ctx)
					}
					started = 0
					return err
				}
				started++
				p.Logger.Debug("plug-in started", "plugin", pl.Name())
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			var errs []error
			for i := started - 1; i >= 0; i-- {
				if err := r.list[i].Stop(ctx); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", r.list[i].Name(), err))
				}
			}
			started = 0
			return errors.Join(errs...)
		},
	})
	return r, nil
}

// NewRunner orders plugins by name; two with one name are an error.
func NewRunner(plugins []Plugin) (*Runner, error) {
	list := make([]Plugin, 0, len(plugins))
	for _, pl := range plugins {
		if pl != nil {
			list = append(list, pl)
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	for i := 1; i < len(list); i++ {
		if list[i].Name() == list[i-1].Name() {
			return nil, fmt.Errorf("plugin: two plug-ins named %q", list[i].Name())
		}
	}
	return &Runner{list: list}, nil
}
