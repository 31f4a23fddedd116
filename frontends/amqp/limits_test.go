package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sys/unix"
)

// A connection over amqp.max-connections is told so with connection.close
// 530 naming the limit, not dropped; once one closes, another gets in.
func TestMaxConnectionsRefusedWithClose(t *testing.T) {
	f := startFerry(t, Config{MaxConnections: 2})
	first := f.dial(t)
	f.dial(t)
	_, err := amqp091.Dial(f.url)
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != codeNotAllowed || !strings.Contains(ae.Reason, "amqp.max-connections") {
		t.Fatalf("third connection with amqp.max-connections 2: %v, want a 530 naming the limit", err)
	}
	// A client that is not AMQP gets the protocol header, as at any time.
	nc, err := net.Dial("tcp", f.srv.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if b, _ := io.ReadAll(nc); string(b) != string(protocolHeader) {
		t.Fatalf("a non-AMQP peer over the limit got %q", b)
	}
	nc.Close()

	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := amqp091.Dial(f.url)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection after one of the two closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// handshake opens a raw connection up to connection.open-ok with
// heartbeat (seconds) and client capabilities caps.
func handshake(t *testing.T, f *ferry, heartbeat uint16, caps Table) *rawConn {
	t.Helper()
	c := dialRawStart(t, f)
	c.method(0, mConnStartOk, Table{"capabilities": caps}, "PLAIN", "\x00guest\x00guest", "en_US")
	c.expect(mConnTune)
	c.method(0, mConnTuneOk, uint16(16), uint32(8192), heartbeat)
	c.method(0, mConnOpen, "/", "", false)
	c.expect(mConnOpenOk)
	return c
}

// A client that stops sending is closed after two heartbeats with a
// connection.close that says why.
func TestHeartbeatTimeoutClosesWithAReason(t *testing.T) {
	f := startFerry(t, Config{})
	c := handshake(t, f, 1, Table{}) // a heartbeat a second
	nc := c.nc
	start := time.Now()
	// Silent from here on: the server's heartbeats are read and not answered.
	m := c.expect(mConnClose)
	if took := time.Since(start); took < 1500*time.Millisecond || took > 4*time.Second {
		t.Fatalf("closed after %v, want about two heartbeats (2s)", took)
	}
	if m.u16(0) != codeConnectionForced || !strings.Contains(m.str(1), "missed heartbeats") {
		t.Fatalf("connection.close %d %q, want 320 naming the missed heartbeats", m.u16(0), m.str(1))
	}
	c.method(0, mConnCloseOk)
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("socket not closed after close-ok: %v", err)
	}
	// amqp091-go with heartbeats on is not closed: it sends its own.
	conn, err := amqp091.DialConfig(f.url, amqp091.Config{Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	select {
	case err := <-closed:
		t.Fatalf("a client sending heartbeats was closed: %v", err)
	case <-time.After(3 * time.Second):
	}
}

// amqp.max-unacked bounds a channel's unacknowledged deliveries whatever
// the prefetch: a consumer without one gets that many and waits; an ack
// lets one more through; basic.get past it closes the channel with 406
// naming the limit.
func TestMaxUnacked(t *testing.T) {
	f := startFerry(t, Config{MaxUnacked: 5})
	conn := f.dial(t)
	ch := openChannel(t, conn)
	if _, err := ch.QueueDeclare("work", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		publish(t, ch, "", "work", false, fmt.Sprintf("w%d", i))
	}
	ds, err := ch.Consume("work", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp091.Delivery
	for range 5 {
		got = append(got, recv(t, ds))
	}
	noDelivery(t, ds, 300*time.Millisecond)
	got[0].Ack(false)
	recv(t, ds)
	noDelivery(t, ds, 300*time.Millisecond)

	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	_, _, err = ch.Get("work", false)
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != codePreconditionFail || !strings.Contains(ae.Reason, "amqp.max-unacked") {
		t.Fatalf("basic.get past amqp.max-unacked: %v, want a 406 naming the limit", err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the channel stayed open")
	}
	// The unacknowledged deliveries went back to the queue with the
	// channel: another channel gets all the queue's messages.
	ch2 := openChannel(t, conn)
	ds2, err := ch2.Consume("work", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 9 {
		recv(t, ds2)
	}
}

// connection.blocked when the store refuses a publish for want of disk
// space, connection.unblocked once there is room again, though the
// blocked publisher sends nothing meanwhile; a connection opened while
// blocked is told at once. Needs to mount a small tmpfs (root).
func TestBlockedWhileTheDiskIsFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs to mount an 8 MiB tmpfs (root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	old := diskProbe
	diskProbe = 50 * time.Millisecond
	t.Cleanup(func() { diskProbe = old })
	f := &ferry{t: t, dir: filepath.Join(dir, "data"), cfg: Config{}}
	f.start()
	t.Cleanup(f.stop)

	conn := f.dial(t)
	blocks := conn.NotifyBlocked(make(chan amqp091.Blocking, 4))
	ch := openChannel(t, conn)
	if _, err := ch.QueueDeclare("q", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// Fill the file system but for 256 KiB.
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 32<<10)
	nacked := false
	for i := 0; i < 1000 && !nacked; i++ {
		dc, err := ch.PublishWithDeferredConfirm("", "q", false, false, amqp091.Publishing{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		nacked = !ok
	}
	if !nacked {
		t.Fatal("32 MiB of publishes on an 8 MiB disk were all confirmed")
	}
	select {
	case b := <-blocks:
		if !b.Active || !strings.Contains(b.Reason, "disk full") {
			t.Fatalf("got %+v, want connection.blocked for the full disk", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked after a publish the full disk refused")
	}
	// amqp091-go reads connection.blocked before NotifyBlocked can be
	// asked for on a new connection: a raw client sees it.
	late := handshake(t, f, 0, Table{"connection.blocked": true})
	if m := late.expect(mConnBlocked); !strings.Contains(m.str(0), "disk full") {
		t.Fatalf("a connection opened while blocked got connection.blocked %q", m.str(0))
	}

	os.Remove(filler)
	select {
	case b := <-blocks:
		if b.Active {
			t.Fatalf("got %+v, want connection.unblocked", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.unblocked after the disk had room again")
	}
	late.expect(mConnUnblocked)
	dc, err := ch.PublishWithDeferredConfirm("", "q", false, false, amqp091.Publishing{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if ok := dc.Wait(); !ok {
		t.Fatal("a publish after the disk had room again was nacked")
	}
}
