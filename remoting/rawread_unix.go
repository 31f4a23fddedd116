//go:build unix

package remoting

import (
	"io"
	"net"
	"syscall"
)

// rawConn is rd's socket, for reads that wait with no buffer held; nil
// when rd is not a TCP or Unix socket.
func rawConn(rd io.Reader) syscall.RawConn {
	var sc syscall.Conn
	switch c := rd.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readFD reads into p from the non-blocking socket fd; syscall.EAGAIN
// when nothing is there to read.
func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err == syscall.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}
