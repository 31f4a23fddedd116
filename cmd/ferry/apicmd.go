package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// onEachFoundCmd completes cmd into a command that changes one named thing
// (kind: "topic", "group", "MQTT client"), its one argument, on every
// broker of --api that has it: act does it on one broker and says what it
// did on out. A broker that does not have it is skipped; none having it is
// an error (apiClient.onEachFound).
func onEachFoundCmd(cmd *cobra.Command, kind string,
	act func(ctx context.Context, c *apiClient, out io.Writer, base, broker, name string) error) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := newAPIClient(cmd)
		if err != nil {
			return err
		}
		name := args[0]
		return c.onEachFound(cmd.Context(), kind+" "+name, func(base, broker string) error {
			return act(cmd.Context(), c, cmd.OutOrStdout(), base, broker, name)
		})
	}
	addAPIFlags(cmd.Flags())
	return cmd
}
