package main

import (
	"io"
	"os"
)

// isTerminal reports whether w is a terminal: progress lines are for a
// person watching, and stay out of a pipe or a file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showsProgress says whether work of count items (0: unknown, as stdin is)
// writes progress lines to w: on a terminal, unless it is too short to
// need them.
func showsProgress(w io.Writer, count int) bool {
	return isTerminal(w) && (count == 0 || count >= progressMin)
}
