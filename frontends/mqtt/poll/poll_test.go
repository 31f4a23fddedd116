package poll

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, and the
// RawConn of the first.
func tcpPair(t *testing.T) (syscall.RawConn, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	raw, err := cc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return raw, cc, sc
}

func TestReadyOnInput(t *testing.T) {
	p, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	raw, cc, sc := tcpPair(t)
	got := make(chan string, 10)
	buf := make([]byte, 64)
	h, err := p.Add(raw, func() {
		_ = cc.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := cc.Read(buf)
		got <- string(buf[:n])
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "one" {
			t.Fatalf("read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ready was not called")
	}
	h.Remove()
}
