package main

import (
	"log/slog"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/config"
)

// authConfig maps the configuration onto auth.Module's needs; a front-end
// that checks clients supplies it with fx.Provide(authConfig), auth.Module.
func authConfig(cfg config.Config, logger *slog.Logger) auth.Config {
	a := cfg.Auth
	return auth.Config{
		PasswordFile:   a.PasswordFile,
		ACLFile:        a.ACLFile,
		AllowAnonymous: a.AllowAnonymous,
		ReloadInterval: a.ReloadInterval,
		Logger:         logger.With("component", "auth"),
	}
}
