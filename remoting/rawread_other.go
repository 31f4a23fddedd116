//go:build !unix

package remoting

import (
	"errors"
	"io"
	"syscall"
)

// rawConn is nil: reads go through the connection's Read.
func rawConn(io.Reader) syscall.RawConn { return nil }

func readFD(uintptr, []byte) (int, error) {
	return 0, errors.New("remoting: no raw reads on this system")
}
