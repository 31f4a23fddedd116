package main

import (
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/monitor"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
)

// namesrvLimits are the NameServer's: the native section's (it speaks the
// same protocol), with its own cap on connections, namesrv-max-connections.
func namesrvLimits(cfg config.Config) remoting.Limits {
	l := native.LimitsFrom(cfg.Native)
	l.MaxConns = cfg.NamesrvMaxConnections
	return l
}

// readinessParams are the listeners /readyz checks, those the application has.
type readinessParams struct {
	fx.In
	Monitor *monitor.Server
	NameSrv *namesrv.Server `optional:"true"`
	Plugins *plugin.Runner  `optional:"true"`
}

// addReadinessChecks has /readyz fail while a listener (the NameServer, or
// a plug-in that is a plugin.Checker: native, MQTT) cannot accept
// connections. It runs after the monitor's module, so that the HTTP
// listener still starts after the others.
func addReadinessChecks(p readinessParams) {
	if p.NameSrv != nil {
		p.Monitor.AddReadinessCheck("namesrv", p.NameSrv.AcceptErr)
	}
	if p.Plugins == nil {
		return
	}
	for _, pl := range p.Plugins.Plugins() {
		if c, ok := pl.(plugin.Checker); ok {
			p.Monitor.AddReadinessCheck(pl.Name(), c.Ready)
		}
	}
}
