package mqtt

import (
	"net"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/ferrymq/ferry/frontends/mqtt/poll"
)

// pollWatcher is the engine's Poller (mochi.Poller): the plain TCP
// connections of logged-in clients are waited on by the poll loops, not by
// a goroutine each (docs/mqtt-poller.md). Connections without a socket of
// their own (TLS, WebSocket) keep a reader goroutine.
type pollWatcher struct{ p *poll.Poller }

func (w pollWatcher) Watch(conn net.Conn, ready func()) (mochi.Watch, bool) {
	bc, ok := conn.(*batchConn)
	if !ok || bc.send.raw == nil {
		return nil, false
	}
	pc := &polled{bc: bc, ready: ready}
	h, err := w.p.Add(bc.send.raw, pc.serve)
	if err != nil {
		return nil, false
	}
	pc.h = h
	bc.park() // the CONNACK, written while no read was under way
	return pc, true
}

// polled is a connection waited on by a poll loop.
type polled struct {
	h     *poll.Handle
	bc    *batchConn
	ready func()
	// paused is set when the engine pauses the watch during ready, to
	// finish a burst on a worker; the loop's.
	paused bool
}

// serve is the loop's call: the connection has input. Reads do not wait
// while the engine handles it; once it is done, what its packets wrote
// (PUBACKs) goes out, and later writes go out at once.
func (pc *polled) serve() {
	pc.paused = false
	pc.bc.send.nowait.Store(true)
	pc.ready()
	if !pc.paused {
		pc.bc.park()
	}
}

func (pc *polled) Pause() {
	pc.paused = true
	pc.bc.send.nowait.Store(false)
	pc.h.Pause()
}

func (pc *polled) Resume() {
	pc.bc.park()
	pc.h.Resume()
}

func (pc *polled) Stop() {
	pc.h.Remove()
	pc.bc.send.nowait.Store(false)
}
