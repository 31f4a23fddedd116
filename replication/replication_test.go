package replication

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/storage"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

func openStore(t *testing.T, dir string, mode storage.FlushMode) *storage.Store {
	t.Helper()
	s, err := storage.Open(dir, storage.Options{SegmentSize: 256 << 10, MaxMessageSize: 64 << 10,
		FlushMode: mode, RetentionAge: -1, RetentionDiskRatio: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startMaster(t *testing.T, s *storage.Store, cfg Config, epoch int64) (*Master, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMaster(s, cfg, epoch, testLogger(t))
	done := make(chan error, 1)
	go func() { done <- m.Serve(ln) }()
	t.Cleanup(func() {
		m.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return m, ln.Addr().String()
}

func publish(t *testing.T, s *storage.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := &storage.Message{Topic: fmt.Sprintf("t%d", i%3), QueueID: i % 2, Keys: []string{fmt.Sprint("k", i)},
			Body: bytes.Repeat([]byte{byte(i)}, 100+i%5000)}
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sameLog checks that b serves a's messages at the same offsets and ids.
func sameLog(t *testing.T, a, b *storage.Store) {
	t.Helper()
	waitFor(t, "the same end", func() bool { return a.EndOffset() == b.EndOffset() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, s := range []*storage.Store{a, b} {
		if err := s.WaitIndexed(ctx, s.EndOffset()); err != nil {
			t.Fatal(err)
		}
	}
	qa, qb := a.Queues(), b.Queues()
	if fmt.Sprint(qa) != fmt.Sprint(qb) {
		t.Fatalf("queues differ:\n%v\n%v", qa, qb)
	}
	for _, q := range qa {
		for off := q.Min; off < q.Max; {
			ra, err := a.Read(q.Topic, q.QueueID, off, storage.ReadOptions{MaxCount: 100})
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.Read(q.Topic, q.QueueID, off, storage.ReadOptions{MaxCount: 100})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ra.Messages {
				ma, mb := ra.Messages[i], rb.Messages[i]
				if a.MessageID(ma.LogOffset) != b.MessageID(mb.LogOffset) || !bytes.Equal(ma.Body, mb.Body) || ma.StoreTime != mb.StoreTime {
					t.Fatalf("%s/%d offset %d differs", q.Topic, q.QueueID, ma.QueueOffset)
				}
			}
			off = ra.Next
		}
	}
}

func TestReplicaCopiesAndCatchesUp(t *testing.T) {
	ms := openStore(t, t.TempDir(), storage.FlushAsync)
	if _, err := BeginEpoch(context.Background(), ms, 1); err != nil {
		t.Fatal(err)
	}
	publish(t, ms, 0, 300)
	m, addr := startMaster(t, ms, Config{Group: "g"}, 1)

	// A brand-new replica copies the whole log, log id included.
	dir := t.TempDir()
	rs := openStore(t, dir, storage.FlushAsync)
	r := NewReplica(rs, Config{}, "g", 1, testLogger(t))
	r.Follow(addr)
	publish(t, ms, 300, 200)
	sameLog(t, ms, rs)
	if rs.LogID() != ms.LogID() {
		t.Fatal("the replica did not adopt the master's log id")
	}
	waitFor(t, "the ack", func() bool { st := m.Replicas(); return len(st) == 1 && st[0].Acked == ms.EndOffset() })
	if ids, changed := m.Proposal(); fmt.Sprint(ids) != "[1]" || !changed {
		t.Fatalf("proposal %v %v, want [1] true", ids, changed)
	}

	// Stopped and restarted, it goes on from its end.
	r.Close()
	rs.Close()
	publish(t, ms, 500, 200)
	rs = openStore(t, dir, storage.FlushAsync)
	r = NewReplica(rs, Config{}, "g", 1, testLogger(t))
	defer r.Close()
	r.Follow(addr)
	sameLog(t, ms, rs)
	hist, err := Epochs(rs)
	if err != nil || fmt.Sprint(hist) != "[{1 0}]" {
		t.Fatalf("replica's epochs %v, %v", hist, err)
	}
}

func TestDivergentLogIsCut(t *testing.T) {
	// The old master wrote in epoch 1 past what the replica copied, then a
	// new master took over in epoch 2. The old one rejoins as a replica.
	a := openStore(t, t.TempDir(), storage.FlushAsync)
	b := openStore(t, t.TempDir(), storage.FlushAsync)
	if _, err := BeginEpoch(context.Background(), a, 1); err != nil {
		t.Fatal(err)
	}
	publish(t, a, 0, 100)
	ma, addrA := startMaster(t, a, Config{}, 1)
	rb := NewReplica(b, Config{}, "", 2, testLogger(t))
	rb.Follow(addrA)
	sameLog(t, a, b)
	rb.Close()
	ma.Close()
	publish(t, a, 100, 50) // never copied: lost when a rejoins
	if _, err := BeginEpoch(context.Background(), b, 2); err != nil {
		t.Fatal(err)
	}
	publish(t, b, 1000, 80)
	_, addrB := startMaster(t, b, Config{}, 2)
	ra := NewReplica(a, Config{}, "", 1, testLogger(t))
	defer ra.Close()
	ra.Follow(addrB)
	sameLog(t, b, a)
	hist, _ := Epochs(a)
	if len(hist) != 2 || hist[1].N != 2 {
		t.Fatalf("epochs after the cut: %v", hist)
	}
}

func TestSyncModeWaitsForReplicas(t *testing.T) {
	ms := openStore(t, t.TempDir(), storage.FlushAsync)
	m, addr := startMaster(t, ms, Config{Mode: "sync", MinInsync: 2}, 1)
	msg := func() *storage.Message { return &storage.Message{Topic: "t", Body: []byte("x")} }
	if err := ms.Append(context.Background(), msg()); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("append with no in-sync replica: %v", err)
	}
	m.SetInSync([]int64{1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if err := ms.Append(ctx, msg()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append with the in-sync replica away: %v", err)
	}
	cancel()
	rs := openStore(t, t.TempDir(), storage.FlushSync)
	r := NewReplica(rs, Config{}, "", 1, testLogger(t))
	defer r.Close()
	r.Follow(addr)
	for i := 0; i < 20; i++ {
		m := msg()
		if err := ms.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		// Acknowledged: the replica has it on disk.
		if got := rs.Stats().Flushed; got < m.LogOffset+int64(m.Size) {
			t.Fatalf("acknowledged up to %d, the replica has %d on disk", m.LogOffset+int64(m.Size), got)
		}
	}
	// A fenced master acknowledges nothing.
	ms.Fence(fmt.Errorf("%w: lease ran out", storage.ErrFenced))
	if err := ms.Append(context.Background(), msg()); !errors.Is(err, storage.ErrFenced) {
		t.Fatalf("fenced append: %v", err)
	}
}

func TestHandshakeIsAuthenticated(t *testing.T) {
	key, _ := clusterauth.NewKey([]byte("0123456789abcdef-secret"))
	other, _ := clusterauth.NewKey([]byte("another cluster's secret"))
	ms := openStore(t, t.TempDir(), storage.FlushAsync)
	publish(t, ms, 0, 10)
	_, addr := startMaster(t, ms, Config{Key: key, Group: "g"}, 1)
	for name, cfg := range map[string]Config{"unsigned": {}, "wrong key": {Key: other}} {
		rs := openStore(t, t.TempDir(), storage.FlushAsync)
		r := NewReplica(rs, cfg, "g", 1, testLogger(t))
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		_, err = r.handshake(c, bufioReader(c), &buf)
		c.Close()
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	rs := openStore(t, t.TempDir(), storage.FlushAsync)
	r := NewReplica(rs, Config{Key: key}, "g", 1, testLogger(t))
	defer r.Close()
	r.Follow(addr)
	sameLog(t, ms, rs)
}

func TestDivergence(t *testing.T) {
	e := func(n, s int64) Epoch { return Epoch{n, s} }
	cases := []struct {
		r, m       []Epoch
		rEnd, mEnd int64
		want       int64
		why        string
	}{
		{nil, nil, 50, 100, 50, "no epochs: the shorter log"},
		{nil, []Epoch{e(1, 30)}, 50, 100, 30, "pre-epoch data only"},
		{[]Epoch{e(1, 0)}, []Epoch{e(1, 0), e(2, 500)}, 300, 900, 300, "replica behind"},
		{[]Epoch{e(1, 0)}, []Epoch{e(1, 0), e(2, 500)}, 600, 900, 500, "replica wrote past the master's epoch 1"},
		{[]Epoch{e(1, 0), e(2, 100), e(4, 700)}, []Epoch{e(1, 0), e(2, 100), e(3, 500)}, 800, 900, 500, "both moved on"},
		{[]Epoch{e(1, 0), e(2, 100)}, []Epoch{e(2, 100), e(3, 400)}, 800, 900, 400, "master's history trimmed"},
		{[]Epoch{e(1, 0)}, []Epoch{e(1, 0)}, 900, 600, 600, "replica ahead in one epoch"},
	}
	for _, c := range cases {
		if got := divergence(c.r, c.m, c.rEnd, c.mEnd); got != c.want {
			t.Errorf("%s: %d, want %d", c.why, got, c.want)
		}
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
