package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Configuration files"}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file (with the FERRY_ environment over it), as serve would read it, and open each file it names",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(config.Sources{File: args[0], Environ: os.Environ()})
			if err != nil {
				return err
			}
			if err := checkFiles(cfg); err != nil {
				return err
			}
			for _, n := range cfg.Notes { // a deprecated key, say
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
