// Package tcptest makes the loopback TCP connections that tests of
// socket code need.
package tcptest

import (
	"net"
	"syscall"
	"testing"
)

// Pair returns the two ends of a loopback TCP connection: the one dialled
// and the one accepted. Both are closed when the test ends.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP() // nil when the listener fails: the test fails below
		accepted <- c
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server = <-accepted
	if server == nil {
		t.Fatal("tcptest: accept failed")
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// RawPair is Pair, with the dialled end's RawConn, for tests of raw
// system calls on a socket.
func RawPair(t testing.TB) (raw syscall.RawConn, client, server *net.TCPConn) {
	t.Helper()
	client, server = Pair(t)
	raw, err := client.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return raw, client, server
}
