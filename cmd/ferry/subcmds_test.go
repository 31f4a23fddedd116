package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every command family refuses an unknown subcommand, and a missing one,
// with an error naming it and the ones it has: never help and exit 0.
func TestUnknownSubcommandIsAnError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "frobnicate", "x"}, `unknown command "frobnicate" for "ferry topic": want one of create,`},
		{[]string{"group", "lsit"}, `unknown command "lsit" for "ferry group": want one of `},
		{[]string{"group", "lsit"}, "did you mean list?"},
		{[]string{"bench", "nope"}, `unknown command "nope" for "ferry bench"`},
		{[]string{"bridge", "nope"}, `unknown command "nope" for "ferry bridge"`},
		{[]string{"cluster", "nope"}, `unknown command "nope" for "ferry cluster"`},
		{[]string{"config", "nope"}, `unknown command "nope" for "ferry config": want one of check`},
		{[]string{"message", "nope"}, `unknown command "nope" for "ferry message"`},
		{[]string{"topic"}, "ferry topic needs a subcommand: create,"},
		{[]string{"nope"}, `unknown command "nope" for "ferry"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRootCmd()
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(tc.args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ferry %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
			}
			if strings.Contains(out.String(), "Available Commands") {
				t.Fatalf("ferry %s printed help on stdout:\n%s", strings.Join(tc.args, " "), out.String())
			}
		})
	}
}
