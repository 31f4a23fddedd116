package main

import (
	"io"
	"log/slog"

	"github.com/ferrymq/ferry/config"
)

// newLogger returns the process's logger, writing to w in the configured
// format at the configured level. cfg has been validated.
func newLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
