package mqtt

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
)

// Module provides the MQTT front-end over the application's *core.Broker;
// the application provides a Config. It is a plug-in (package core/plugin)
// named "mqtt": it starts serving when the plug-ins start and closes
// (disconnecting clients, saving sessions) when they stop, before the core.
var Module = fx.Module("mqtt", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

// Plugin is the front-end as the configuration's mqtt section (package
// mqttconf) has it (ConfigFrom): Module with its Config, or nothing when every listener is
// off.
func Plugin(cfg config.Config) fx.Option {
	if m := ConfigFrom(cfg, slog.Default(), nil); m.Addr == "" && m.WSAddr == "" && m.TLSAddr == "" {
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
	return result{Server: s, Plugin: frontend{s}}, nil
}

// frontend is the Server as the plug-in "mqtt": a readiness check
// (plugin.Checker) and the lister of its clients (plugin.ClientLister).
type frontend struct{ s *Server }

func (f frontend) Name() string                { return "mqtt" }
func (f frontend) Start(context.Context) error { return f.s.Start() }
func (f frontend) Stop(context.Context) error  { return f.s.Close() }
func (f frontend) Ready() error                { return f.s.ListenerHealth() }
func (f frontend) Clients() []plugin.Client    { return f.s.Clients() }
func (f frontend) Disconnect(id string) error  { return f.s.Disconnect(id) }

// ConfigFrom maps the configuration file's mqtt section onto Config; guard,
// when set, is the application's authenticator.
func ConfigFrom(cfg config.Config, logger *slog.Logger, guard *auth.Authenticator) Config {
	m := cfg.MQTT
	on := func(addr string) string {
		if addr == "off" {
			return ""
		}
		return addr
	}
	c := Config{
		Addr: on(m.Addr), WSAddr: on(m.WSAddr), TLSAddr: on(m.TLSAddr), TLSCertFile: m.TLSCert, TLSKeyFile: m.TLSKey,
		Flags:         Flags{Addr: "--mqtt-addr", WSAddr: "--mqtt-ws-addr", TLSAddr: "--mqtt-tls-addr"},
		MaxPacketSize: uint32(m.MaxPacketSize), MaxInflight: m.MaxInflight, MaxQueued: m.MaxQueued,
		MaxConnections: m.MaxConnections, ResendInterval: m.ResendInterval,
		MaxSessionExpiry: uint32(m.MaxSessionExpiry / time.Second),
		MaxKeepAlive:     uint16(m.MaxKeepAlive / time.Second),
		Logger:           logger.With("component", "mqtt"),

		ConnectTimeout: m.ConnectTimeout, MaxConnectSize: uint32(m.MaxConnectSize),
		MaxTopicLevels: m.MaxTopicLevels, MaxTopicLength: m.MaxTopicLength, MaxTopicAlias: m.MaxTopicAlias,
	}
	if m.MaxTopicAlias == 0 {
		c.MaxTopicAlias = -1 // none
	}
	if m.TLSCert == "" {
		c.TLSAddr = "" // no certificate, no TLS listener
	}
	for _, r := range m.Rules {
		c.Rules = append(c.Rules, Rule{Prefix: r.Prefix, Topic: r.Topic})
	}
	if guard != nil {
		c.Guard = guard
	}
	return c
}
