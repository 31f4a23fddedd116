// Package poll waits for input on many sockets at once, on a few
// goroutines (loops), each of which owns an epoll instance: a socket that
// is waited on costs no goroutine of its own, and a loop woken once
// handles every socket that has input then, on its own goroutine, without
// a hand-off per socket. See docs/mqtt-poller.md.
//
// A loop does not block in epoll_wait, which would hold a thread of the
// runtime in a system call: its epoll descriptor is itself waited on in
// Go's poller, and the loop takes the ready sockets with epoll_wait's
// timeout of 0. Sockets are registered level-triggered: a socket whose
// input was not all read is reported again by the next epoll_wait.
package poll

import (
	"errors"
	"sync"
)

// ErrUnsupported is New's error on systems without epoll.
var ErrUnsupported = errors.New("poll: no epoll on this system")

// A Handle is a socket being waited on (Poller.Add).
//
// ready runs on the socket's loop, one call at a time, while the Handle
// holds mu. Pause is called from ready only; Resume and Remove from any
// goroutine.
type Handle struct {
	l     *loop
	id    uint64
	ready func()

	mu      sync.Mutex // held while ready runs
	paused  bool       // ready is not called; the socket is registered for no event
	removed bool
	ctl     ctlFunc // changes the socket's registration
}
