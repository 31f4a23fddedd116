package config

import "github.com/ferrymq/ferry/bridge/rabbitmq/fileconf"

// The bridges list's schema and checks are the bridge's own (package
// bridge/rabbitmq/fileconf); these names keep config's API.
type (
	// BridgeConfig is one RabbitMQ bridge, an entry of the bridges list.
	BridgeConfig = fileconf.Bridge
	// BridgeQueue is an inbound bridge's queue.
	BridgeQueue = fileconf.Queue
	// BridgeBinding binds the queue to an exchange.
	BridgeBinding = fileconf.Binding
)

func validateBridges(bs []BridgeConfig) error { return fileconf.Validate(bs) }

func resolvePasswords(bs []BridgeConfig, environ []string) error {
	return fileconf.ResolvePasswords(bs, func(name string) string { return lookupEnv(environ, name) })
}
