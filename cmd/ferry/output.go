package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every list and describe command prints a table for people or, with
// -o json, one JSON document for programs: the same values, parsed back
// by the tests.

// addOutputFlag adds -o/--output to a list or describe command.
func addOutputFlag(fs *pflag.FlagSet) {
	fs.StringP("output", "o", "table", "output format: table or json")
}

// outputFormat is the command's -o, checked.
func outputFormat(cmd *cobra.Command) (string, error) {
	f, err := cmd.Flags().GetString("output")
	if err != nil {
		return "", fmt.Errorf("--output: %w", err)
	}
	switch f {
	case "table", "json":
		return f, nil
	}
	return "", fmt.Errorf("-o %q: want table or json", f)
}

// render writes v as indented JSON with -o json, else the table that
// table writes (through a tabwriter, flushed here).
func render(cmd *cobra.Command, v any, table func(w io.Writer) error) error {
	f, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if err := table(w); err != nil {
		return err
	}
	return w.Flush()
}
