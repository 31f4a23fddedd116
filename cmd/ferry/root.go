package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/config"
)

// newRootCmd builds the ferry command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Ferry is a message broker in the RocketMQ model, for MQTT devices and services alike",
		// main prints the error once, on one line; usage is shown only for
		// command-line mistakes (see silenceUsageOnRun).
		SilenceErrors:     true,
		PersistentPreRunE: silenceUsageOnRun,
	}
	pf := root.PersistentFlags()
	pf.String("config", "", "YAML config file (env "+config.FileEnv+")")
	config.AddFlag(pf, "log-format", "log.format", "log format: text or json")
	config.AddFlag(pf, "log-level", "log.level", "log level: debug, info, warn or error")

	root.AddCommand(newServeCmd(), newNamesrvCmd(), newBrokerCmd(), newControllerCmd(),
		newTopicCmd(), newGroupCmd(), newProduceCmd(), newConsumeCmd(), newMessageCmd(), newBenchCmd(), newBridgeCmd(), newClusterCmd(), newPasswdCmd(), newConfigCmd(), newHealthCmd(), newVersionCmd())
	root.AddCommand(newDLQCmd(), newMQTTCmd())
	requireSubcommands(root)
	return root
}

// silenceUsageOnRun stops cobra from printing usage once the arguments have
// parsed: an error after that is not a command-line mistake.
func silenceUsageOnRun(cmd *cobra.Command, _ []string) error {
	cmd.SilenceUsage = true
	return nil
}

// loadConfig reads the configuration for cmd from its flags, the process's
// environment and the file that --config or FERRY_CONFIG names.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, err := cmd.Flags().GetString("config")
	if err != nil {
		return config.Config{}, fmt.Errorf("--config: %w", err)
	}
	return config.Load(config.Sources{File: path, Environ: os.Environ(), Flags: cmd.Flags()})
}
