package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
)

func newPasswdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passwd FILE USER",
		Short: "Add USER to a password file, or replace USER's password",
		Long: `Add USER to the password file FILE (auth.password-file), or replace USER's
password there. On a terminal it asks for the password twice, without echo;
otherwise (piped) it is the first line of stdin. Or give --password.
FILE is created if missing and rewritten atomically with mode 0600; its other
lines are kept. A running Ferry picks the change up within auth.reload-interval.

The line holds a bcrypt hash of the password and USER's signing key, derived
from the password, which checks signed native requests. Ferry's clients derive
it themselves from --username and --password; a RocketMQ client with ACL is
configured with AccessKey=USER and SecretKey=the signing key, which
--signing-key prints (it changes nothing). The key is as secret as the password.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, user := args[0], args[1]
			fs := cmd.Flags()
			if show, _ := fs.GetBool("signing-key"); show {
				if fs.Changed("password") || fs.Changed("cost") {
					return errors.New("--signing-key prints the key stored in FILE: it takes no --password or --cost")
				}
				key, err := auth.StoredSigningKey(file, user)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
				return err
			}
			password, _ := fs.GetString("password")
			if !fs.Changed("password") {
				var err error
				if password, err = promptPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), user); err != nil {
					return err
				}
			}
			cost, _ := fs.GetInt("cost")
			if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
				return fmt.Errorf("--cost %d: want %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
			}
			replaced, err := auth.SetPassword(file, user, password, cost)
			if err != nil {
				return err
			}
			did := "added"
			if replaced {
				did = "replaced the password of"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s user %s in %s\n", did, user, file)
			return err
		},
	}
	cmd.Flags().String("password", "", "the password, instead of the first line of stdin (visible to other users of the machine: for scripts)")
	cmd.Flags().Int("cost", bcrypt.DefaultCost, "bcrypt cost: each step doubles the time a check takes")
	cmd.Flags().Bool("signing-key", false, "print USER's signing key from FILE (a RocketMQ client's SecretKey) and change nothing")
	return cmd
}

// readPassword returns the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password: give it on the first line of stdin, or with --password")
	}
	return line, nil
}
