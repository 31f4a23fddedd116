package auth

import (
	"context"

	"go.uber.org/fx"
)

// Module provides the application's *Authenticator from a Config that the
// application supplies. When Config.ReloadInterval is positive and a file is
// configured, one goroutine watches the files from start to stop.
var Module = fx.Module("auth", fx.Provide(newFromFx))

func newFromFx(lc fx.Lifecycle, cfg Config) (*Authenticator, error) {
	a, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ReloadInterval <= 0 || cfg.PasswordFile == "" && cfg.ACLFile == "" {
		return a, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				a.Watch(ctx, cfg.ReloadInterval)
			}()
			return nil
		},
		OnStop: func(stop context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-stop.Done():
				return stop.Err()
			}
		},
	})
	return a, nil
}
