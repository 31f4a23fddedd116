package native

import (
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/remoting"
)

// serverSends sends the requests the broker makes of its clients
// (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE), one-way, on a
// goroutine per send and one send per connection at a time: a peer that
// does not read blocks only its own send until the connection's limits
// close it, and meanwhile it is sent nothing more. stop waits for the
// sends.
type serverSends struct {
	opaque atomic.Int32

	mu      sync.Mutex
	busy    map[*remoting.Conn]bool // connections a send is writing to
	stopped bool
	wg      sync.WaitGroup
}

// oneway makes a one-way request with the next opaque.
func (q *serverSends) oneway(code int16, ext []remoting.Field, body []byte) *remoting.Command {
	req := remoting.NewRequest(code, ext, body)
	req.Flag |= remoting.FlagOneway
	req.Opaque = q.opaque.Add(1)
	return req
}

// sending reports whether a send to c is still writing.
func (q *serverSends) sending(c *remoting.Conn) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.busy[c]
}

// send starts sending cmds to c; false, and nothing sent, when a send to c
// is still writing or stop was called. failed, when not nil, is told of a
// send that failed.
func (q *serverSends) send(c *remoting.Conn, cmds []*remoting.Command, failed func(error)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || q.busy[c] {
		return false
	}
	if q.busy == nil {
		q.busy = map[*remoting.Conn]bool{}
	}
	q.busy[c] = true
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		if err := c.Send(cmds...); err != nil && failed != nil {
			failed(err)
		}
		q.mu.Lock()
		delete(q.busy, c)
		q.mu.Unlock()
	}()
	return true
}

// idle reports whether no send is writing.
func (q *serverSends) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.busy) == 0
}

// stop refuses new sends and waits for those writing. The connections must
// be closed first: a send blocked on one ends when it closes.
func (q *serverSends) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.wg.Wait()
}
