package main

import (
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/remoting"
)

// nativeLimits maps the configuration onto the limits of the broker's
// native listener (docs/native.md, "Limits").
func nativeLimits(cfg config.Config) remoting.Limits {
	return remoting.Limits{
		MaxConns:            cfg.NativeMaxConnections,
		MaxFrame:            cfg.NativeMaxFrame,
		MaxInFlight:         cfg.NativeMaxInFlight,
		FirstRequestTimeout: cfg.NativeFirstRequestTimeout,
		IdleTimeout:         cfg.NativeIdleTimeout,
		MaxQueuedBytes:      cfg.NativeMaxQueuedBytes,
	}
}

// namesrvLimits are the NameServer's: the native ones, with its own cap on
// connections.
func namesrvLimits(cfg config.Config) remoting.Limits {
	l := nativeLimits(cfg)
	l.MaxConns = cfg.NamesrvMaxConnections
	return l
}
