package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the master end (what a terminal
// emulator holds) and the slave end (the program's stdin).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// typeWhenSilent types line into the terminal once echo is off, as a
// user would after the prompt.
func typeWhenSilent(t *testing.T, master, slave *os.File, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the terminal's echo was never turned off")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := master.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

// On a terminal ferry passwd asks twice and echoes nothing of the password.
func TestPromptPasswordOnATerminalEchoesNothing(t *testing.T) {
	master, slave := openPTY(t)
	var prompt lockedBuffer
	type result struct {
		pw  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := promptPassword(slave, &prompt, "alice")
		done <- result{pw, err}
	}()
	typeWhenSilent(t, master, slave, "s3cret\n")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(prompt.String(), "Again: "); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never asked again: prompted %q", prompt.String())
		}
	}
	typeWhenSilent(t, master, slave, "s3cret\n")
	r := <-done
	if r.err != nil || r.pw != "s3cret" {
		t.Fatalf("promptPassword = %q, %v", r.pw, r.err)
	}
	if !strings.HasPrefix(prompt.String(), "Password for alice: ") {
		t.Fatalf("prompt %q", prompt.String())
	}
	// What the terminal showed: its echo, read without blocking (Fd put
	// the file in blocking mode, so read the descriptor directly).
	fd := int(master.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	var echoed bytes.Buffer
	buf := make([]byte, 256)
	for {
		n, err := unix.Read(fd, buf)
		if n <= 0 || err != nil {
			break
		}
		echoed.Write(buf[:n])
	}
	if strings.Contains(echoed.String(), "s3cret") {
		t.Fatalf("the terminal echoed the password: %q", echoed.String())
	}
}

// Piped, the password is stdin's first line and nothing is prompted.
func TestPromptPasswordPipedReadsALine(t *testing.T) {
	var prompt bytes.Buffer
	pw, err := promptPassword(strings.NewReader("s3cret\nmore\n"), &prompt, "alice")
	if err != nil || pw != "s3cret" || prompt.Len() != 0 {
		t.Fatalf("promptPassword = %q, %v, prompted %q", pw, err, prompt.String())
	}
}
