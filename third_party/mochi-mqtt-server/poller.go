// SPDX-License-Identifier: MIT

package mqtt

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrWouldBlock is what Read on a connection watched by a Poller returns,
// while the poller's ready callback runs, when nothing has arrived: the
// connection would have to wait.
var ErrWouldBlock = errors.New("mqtt: no input has arrived")

// A Poller waits for input on many clients' connections at once, so that
// a client needs no goroutine blocked on its connection, and a burst of
// input from many clients is handled on the goroutine the poller wakes,
// without a hand-off per client.
//
// Watch starts watching conn: each time conn has input, the poller calls
// ready on a goroutine of its own, never two calls for one connection at
// once. While ready runs, Read on conn does not wait: it returns
// ErrWouldBlock (or an error wrapping it) when nothing has arrived. Watch
// returns false for a connection the poller cannot watch; that client is
// then read as without a Poller. What the client's packets wrote before
// Watch is to be sent by Watch: the engine reads no more before ready.
type Poller interface {
	Watch(conn net.Conn, ready func()) (Watch, bool)
}

// A Watch is a connection being watched.
//
// Pause, called from ready only, stops the calls to ready and makes Read
// on the connection wait again, as without a Poller, until Resume, which
// may be called from any goroutine. Stop ends the watch: it waits for a
// call of ready under way to return, and the poller calls ready no more.
// Resume after Stop does nothing.
type Watch interface {
	Pause()
	Resume()
	Stop()
}

// readPolled reads cl's packets through p (see Poller) until the client
// ends, and reports false when p cannot watch cl's connection.
//
// A burst of packets that have arrived whole is handled on the poller's
// goroutine when the packets are publishes of QoS 0 or 1 that retain
// nothing, acknowledgements of QoS 1 deliveries and pings: their handling
// does not wait. From the first packet that is anything else, or that has
// not arrived whole, the rest of the burst is handled on a worker, with
// reads that wait, while the watch is paused, as Read does without a
// Poller. The goroutine that called Read waits, on one channel, for the
// client to end: an error of its connection or its packets, Stop, or the
// server's keep-alive check (endSilentClients). So a client read by a
// Poller holds no timer, and its goroutine no deadline.
func (cl *Client) readPolled(p Poller, handler ReadFn) (error, bool) {
	if cl.Net.bconn.buffered() > 0 { // sent with the CONNECT: the poller would not see it
		var err error
		done := make(chan struct{})
		cl.ops.workers.run(func() {
			cl.refreshDeadline(cl.State.Keepalive)
			err = cl.readBurst(handler)
			close(done)
		})
		<-done
		if err != nil || cl.Closed() {
			return err, true
		}
	}
	pc := &polledClient{cl: cl, handler: handler, ended: make(chan error, 1)}
	pc.input.Store(time.Now().UnixNano())
	pc.handling.Lock() // ready may come before Watch returns
	w, ok := p.Watch(cl.Net.Conn, pc.ready)
	if !ok {
		pc.handling.Unlock()
		return nil, false
	}
	pc.w = w
	if cl.Net.Conn != nil {
		_ = cl.Net.Conn.SetDeadline(time.Time{}) // the connection is read without waiting
	}
	pc.handling.Unlock()
	defer func() {
		w.Stop()
		pc.handling.Lock() // a worker's burst under way
		pc.handling.Unlock()
	}()

	cl.polled.Store(pc)
	defer cl.polled.Store(nil)
	if cl.Closed() { // stopped before Stop could see pc
		return nil, true
	}
	return <-pc.ended, true
}

// endSilentClients ends the clients read by a Poller that have sent
// nothing for one and a half times their keep-alive [MQTT-3.1.2-22], as a
// read deadline ends the others.
func (s *Server) endSilentClients(now time.Time) {
	silent := func(cl *Client) bool {
		pc := cl.polled.Load()
		return pc != nil && pc.silent(now)
	}
	for _, cl := range s.Clients.filter(silent) {
		if pc := cl.polled.Load(); pc != nil {
			pc.end(fmt.Errorf("mqtt: nothing read within 1.5 times the keep-alive of %d s: %w", cl.State.Keepalive, os.ErrDeadlineExceeded))
		}
	}
}

// polledClient is a client read through a Poller.
type polledClient struct {
	cl      *Client
	handler ReadFn
	w       Watch
	ended   chan error   // the client's reading ended, with this error (end)
	done    bool         // ready has ended the client; under handling
	input   atomic.Int64 // when input last arrived, unix ns
	// handling is held while a burst is handled, so that the client is
	// detached only after it.
	handling sync.Mutex
}

// end ends the client's reading with err, unless it has ended already.
func (pc *polledClient) end(err error) {
	select {
	case pc.ended <- err:
	default:
	}
}

// silent reports whether the client has sent nothing for one and a half
// times its keep-alive.
func (pc *polledClient) silent(now time.Time) bool {
	ka := time.Duration(pc.cl.State.Keepalive) * 1500 * time.Millisecond
	return ka > 0 && now.Sub(time.Unix(0, pc.input.Load())) >= ka
}

// finish ends the client's reading with err from ready: the poller calls
// ready no more.
func (pc *polledClient) finish(err error) {
	pc.done = true
	pc.w.Pause()
	pc.end(err)
}

// ready is the poller's call: cl's connection has input.
func (pc *polledClient) ready() {
	cl := pc.cl
	pc.handling.Lock()
	defer pc.handling.Unlock()
	if pc.done {
		return
	}
	b := cl.Net.bconn
	if b.buffered() == 0 {
		b.fill()
		if b.r == b.w {
			if errors.Is(b.err, ErrWouldBlock) {
				b.err = nil
				return
			}
			pc.finish(b.readErr())
			return
		}
	}
	pc.input.Store(time.Now().UnixNano())
	for b.packetBuffered() && inlinePacket(b.buf[b.r]) {
		if err := cl.readOne(pc.handler); err != nil {
			pc.finish(err)
			return
		}
		if cl.Closed() {
			pc.finish(nil)
			return
		}
	}
	if idle := cl.ops.options.OnReadIdle; idle != nil && !b.packetBuffered() {
		idle(cl) // before the wait for the rest of a packet, too
	}
	if b.buffered() > 0 { // a packet to handle off this goroutine, or a part of one
		pc.w.Pause()
		cl.ops.workers.run(pc.burst)
	}
}

// burst handles, on a worker, what ready left, with reads that wait.
func (pc *polledClient) burst() {
	cl := pc.cl
	pc.handling.Lock()
	cl.refreshDeadline(cl.State.Keepalive)
	err := cl.readBurst(pc.handler)
	if cl.Net.Conn != nil {
		_ = cl.Net.Conn.SetDeadline(time.Time{})
	}
	pc.input.Store(time.Now().UnixNano())
	if err != nil || cl.Closed() {
		pc.done = true
		pc.handling.Unlock()
		pc.end(err)
		return
	}
	pc.handling.Unlock()
	pc.w.Resume()
}

// inlinePacket reports whether a packet with this first byte of its fixed
// header is handled on the poller's goroutine: see readPolled.
func inlinePacket(b byte) bool {
	switch b >> 4 {
	case packets.Publish:
		qos, retain := (b>>1)&3, b&1 == 1
		return qos < 2 && !retain
	case packets.Puback, packets.Pingreq:
		return true
	}
	return false
}

// readOne reads and handles the packet that has arrived whole.
func (cl *Client) readOne(handler ReadFn) error {
	var fh packets.FixedHeader
	if err := cl.ReadFixedHeader(&fh); err != nil {
		return err
	}
	pk, err := cl.ReadPacket(&fh)
	if err != nil {
		return err
	}
	return handler(cl, pk)
}
