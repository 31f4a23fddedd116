package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// requireSubcommands gives every command family under root (topic, group,
// bench, …) a RunE that refuses what it does not know. Cobra runs a
// family that has no Run of its own by printing its help and exiting 0,
// so `ferry topic delete x`, where delete does not exist, looked like a
// success to a script. The root is left to cobra, which already refuses an
// unknown command.
func requireSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		walkFamilies(c)
	}
}

func walkFamilies(cmd *cobra.Command) {
	if !cmd.HasSubCommands() {
		return
	}
	if cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = unknownSubcommand
	}
	for _, c := range cmd.Commands() {
		walkFamilies(c)
	}
}

// unknownSubcommand is the error of a family run without one of its
// subcommands: it names what was given and what is allowed.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	allowed := strings.Join(names, ", ")
	if len(args) == 0 {
		return fmt.Errorf("%s needs a subcommand: %s (%s --help)", cmd.CommandPath(), allowed, cmd.CommandPath())
	}
	msg := fmt.Sprintf("unknown command %q for %q: want one of %s", args[0], cmd.CommandPath(), allowed)
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default for the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
	}
	return fmt.Errorf("%s", msg)
}
