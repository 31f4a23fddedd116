package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// promptPassword reads user's password: asked twice without echo when in
// is a terminal (a password on the screen is a password in the scrollback
// and over the shoulder), else the first line of in, for scripts.
func promptPassword(in io.Reader, prompt io.Writer, user string) (string, error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return readPassword(in)
	}
	read := func(what string) (string, error) {
		fmt.Fprintf(prompt, "%s: ", what)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt) // the newline the user typed was not echoed
		if err != nil {
			return "", fmt.Errorf("reading the password from the terminal: %w", err)
		}
		return string(b), nil
	}
	first, err := read("Password for " + user)
	if err != nil {
		return "", err
	}
	if first == "" {
		return "", errors.New("no password: an empty one is not allowed")
	}
	again, err := read("Again")
	if err != nil {
		return "", err
	}
	if again != first {
		return "", errors.New("the two passwords differ: nothing changed")
	}
	return first, nil
}
