package amqp

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
)

// Module provides the AMQP front-end over the application's *core.Broker;
// the application provides a Config. It is a plug-in (package core/plugin)
// named "amqp": it starts serving when the plug-ins start and closes its
// connections (320 CONNECTION_FORCED) when they stop, before the core.
var Module = fx.Module("amqp", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

// Plugin is the front-end as the configuration's amqp section (package
// amqpconf) has it: Module with its Config, or nothing when every listener
// is off.
func Plugin(cfg config.Config) fx.Option {
	if c := ConfigFrom(cfg, slog.Default(), nil); c.Addr == "" && c.TLSAddr == "" {
		return fx.Options()
	}
	return fx.Options(fx.Provide(ConfigFrom), Module)
}

type params struct {
	fx.In
	Broker   *core.Broker
	Config   Config
	Registry *prometheus.Registry `optional:"true"`
}

type result struct {
	fx.Out
	Server *Server
	Plugin plugin.Plugin `group:"plugins"`
}

func newFromFx(p params) (result, error) {
	s, err := New(p.Broker, p.Config)
	if err != nil {
		return result{}, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(s); err != nil {
			return result{}, err
		}
	}
	start := func(context.Context) error { return s.Start() }
	stop := func(context.Context) error { return s.Close() }
	return result{Server: s, Plugin: plugin.Funcs("amqp", start, stop, s.Ready)}, nil
}

// ConfigFrom maps the configuration file's amqp section onto Config;
// guard, when set, is the application's authenticator.
func ConfigFrom(cfg config.Config, logger *slog.Logger, guard *auth.Authenticator) Config {
	a := cfg.AMQP
	on := func(addr string) string {
		if addr == "off" {
			return ""
		}
		return addr
	}
	c := Config{
		Addr: on(a.Addr), TLSAddr: on(a.TLSAddr), TLSCertFile: a.TLSCert, TLSKeyFile: a.TLSKey,
		AddrFlag: "--amqp-addr", TLSAddrFlag: "--amqp-tls-addr",
		FrameMax: uint32(a.FrameMax), ChannelMax: uint16(a.ChannelMax), Heartbeat: a.Heartbeat,
		MaxMessageSize: a.MaxMessageSize, MaxUnacked: a.MaxUnacked, MaxUnconfirmed: a.MaxUnconfirmed,
		MaxTxBytes: a.MaxTxBytes, MaxConnections: a.MaxConnections, HandshakeTimeout: a.HandshakeTimeout,
		Logger: logger.With("component", "amqp"),
	}
	if a.Heartbeat == 0 {
		c.Heartbeat = -1 // off
	}
	if a.TLSCert == "" {
		c.TLSAddr = ""
	}
	if ms := cfg.Storage.MaxMessageSize; ms > 0 && ms < c.MaxMessageSize {
		c.MaxMessageSize = ms
	}
	if guard != nil {
		c.Guard = guard
	}
	return c
}
