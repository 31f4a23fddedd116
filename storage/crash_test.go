package storage

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test runs a real child process (this test binary, re-executed)
// that appends from several goroutines and prints each acknowledged
// message. The parent kills it with SIGKILL mid-load, reopens the store and
// checks that every acknowledged message is there byte for byte, in either
// flush mode (an async append is acknowledged once written to the files: a
// crash of the process cannot lose it, only one of the machine), and that
// whatever else is readable is whole.

const (
	crashEnvDir  = "FERRY_STORAGE_CRASH_DIR"
	crashEnvMode = "FERRY_STORAGE_CRASH_MODE"
	crashWriters = 8
)

func crashOptions(t testing.TB, mode FlushMode) Options {
	o := testOptions(t)
	o.SegmentSize = 256 << 10
	o.FlushMode = mode
	o.FlushInterval = 50 * time.Millisecond
	return o
}

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	s, err := Open(dir, crashOptions(t, FlushMode(os.Getenv(crashEnvMode))))
	if err != nil {
		fmt.Fprintf(os.Stdout, "error %v\n", err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for w := 0; w < crashWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				seq := w*10_000_000 + i
				m := genMessage(seq, 4, 3, 2000)
				if err := s.Append(context.Background(), m); err != nil {
					fmt.Fprintf(os.Stdout, "error %v\n", err)
					os.Exit(2)
				}
				// One write per line: atomic on a pipe.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %d\n", seq, m.LogOffset))
			}
		}()
	}
	wg.Wait()
}

type ack struct {
	seq    int
	logOff int64
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, mode := range []FlushMode{FlushSync, FlushAsync} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			var kept []ack                       // acknowledged and found after their crash: they must stay
			for round := 0; round < 5; round++ { // crash the same store repeatedly
				got := runAndKill(t, dir, mode, 500+rand.Intn(3000))
				kept = verifyAfterCrash(t, dir, mode, kept, got)
			}
		})
	}
}

// runAndKill starts a child on dir, reads acks until it has n, kills it with
// SIGKILL and returns the acks.
func runAndKill(t *testing.T, dir string, mode FlushMode, n int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvMode+"="+string(mode))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acks []ack
	sc := bufio.NewScanner(out)
	for len(acks) < n && sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error ") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child: %s", line)
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "ack" {
			continue // test framework chatter
		}
		seq, _ := strconv.Atoi(f[1])
		off, _ := strconv.ParseInt(f[2], 10, 64)
		acks = append(acks, ack{seq, off})
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acks) < n {
		t.Fatalf("child stopped after %d acks: %v", len(acks), sc.Err())
	}
	return acks
}

// verifyAfterCrash reopens the store and checks that every message in kept
// (found after earlier crashes) and every one of acked is there byte for
// byte. It returns kept and acked.
func verifyAfterCrash(t *testing.T, dir string, mode FlushMode, kept, acked []ack) []ack {
	t.Helper()
	o := crashOptions(t, mode)
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	check := func(a ack) error {
		m, err := s.ReadAt(a.logOff)
		if err != nil {
			return err
		}
		return sameMessage(&m, genMessage(a.seq, 4, 3, 2000))
	}
	for _, a := range kept {
		if err := check(a); err != nil {
			t.Fatalf("seq %d at log offset %d, found after an earlier crash, is gone: %v", a.seq, a.logOff, err)
		}
	}
	// Both flush modes promise every ack against a process crash.
	lost := 0
	for _, a := range acked {
		if err := check(a); err != nil {
			lost++
			t.Errorf("acknowledged seq %d at log offset %d lost: %v", a.seq, a.logOff, err)
			continue
		}
		kept = append(kept, a)
	}
	if lost > 0 {
		t.Fatalf("%s: %d of %d acknowledged messages lost to a kill -9", mode, lost, len(acked))
	}
	t.Logf("%s: %d acknowledged, all found after the kill", mode, len(acked))

	// Everything readable is whole, and each queue is contiguous.
	total := 0
	for _, qi := range s.Queues() {
		got := readAll(t, s, qi.Topic, qi.QueueID, qi.Min)
		if int64(len(got)) != qi.Max-qi.Min {
			t.Fatalf("%s/%d: read %d messages, offsets say %d", qi.Topic, qi.QueueID, len(got), qi.Max-qi.Min)
		}
		for i := range got {
			if got[i].QueueOffset != qi.Min+int64(i) {
				t.Fatalf("%s/%d: message %d has queue offset %d", qi.Topic, qi.QueueID, i, got[i].QueueOffset)
			}
			if err := sameMessage(&got[i], genMessage(int(got[i].BornTime/1000), 4, 3, 2000)); err != nil {
				t.Fatalf("%s/%d offset %d: %v", qi.Topic, qi.QueueID, got[i].QueueOffset, err)
			}
		}
		total += len(got)
	}
	if total < len(kept) {
		t.Fatalf("queues hold %d messages, fewer than the %d acknowledged ones found", total, len(kept))
	}
	return kept
}
