package amqp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/auth"
)

// outQueue is how many writes (a method, or a delivery's frames) wait for
// a connection's writer; a full queue blocks who writes (the reader, a
// queue's dispatcher), so what waits is bounded by it.
const outQueue = 256

// freeBuffers is how many written buffers a connection keeps for reuse.
const freeBuffers = 16

// closeWait bounds how long a closing connection waits for close-ok.
const closeWait = 2 * time.Second

// conn is one AMQP connection: a reader goroutine (serve) that runs the
// state machine and every method, and a writer goroutine (write).
type conn struct {
	s      *Server
	nc     net.Conn
	log    *slog.Logger
	remote string

	// Set during negotiation, then read only.
	user       string
	clientID   string
	caps       Table
	frameMax   uint32 // negotiated, frame included
	channelMax uint16
	heartbeat  time.Duration
	tuned      chan struct{} // closed once heartbeat is set
	ready      atomic.Bool   // negotiated: the fields above are set

	out  chan []byte
	free chan []byte   // buffers the writer is done with, for reuse
	quit chan struct{} // closed by finish: the writer writes what waits, then stops
	dead chan struct{} // closed when the writer stops: sends are dropped
	once sync.Once

	mu       sync.Mutex
	channels map[uint16]*channel
	owned    []*queue
	closing  bool // connection.close sent: only close-ok is read
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), log: s.log.With("remote", nc.RemoteAddr().String()),
		frameMax: s.cfg.FrameMax, channelMax: s.cfg.ChannelMax, out: make(chan []byte, outQueue), free: make(chan []byte, freeBuffers),
		quit: make(chan struct{}), dead: make(chan struct{}), tuned: make(chan struct{}), channels: map[uint16]*channel{}}
}

// capability reports whether the client announced capability name.
func (c *conn) capability(name string) bool {
	v, _ := c.caps[name].(bool)
	return v
}

// send queues frames for the writer; false when the connection is gone.
func (c *conn) send(b []byte) bool {
	select {
	case <-c.dead:
		return false
	default:
	}
	select {
	case c.out <- b:
		return true
	case <-c.dead:
		return false
	}
}

// sendMethod sends one method frame on channel ch.
func (c *conn) sendMethod(ch uint16, id methodID, args ...any) bool {
	return c.send(appendMethodFrame(nil, ch, id, args...))
}

// write is the writer: it writes what is queued, flushing when nothing
// more waits, and a heartbeat when it wrote nothing for half the interval.
func (c *conn) write() {
	defer c.stop()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	// The writer starts before the heartbeat is negotiated: it reads it
	// once tuned is closed.
	var tick <-chan time.Time
	tuned := c.tuned
	wrote := false
	// The write deadline is moved on at most every quarter of the write
	// timeout, not per write (each move is a timer update): a write is
	// still given at least three quarters of it.
	var armed time.Time
	arm := func() {
		if now := time.Now(); now.Sub(armed) >= c.s.cfg.WriteTimeout/4 {
			c.nc.SetWriteDeadline(now.Add(c.s.cfg.WriteTimeout))
			armed = now
		}
	}
	for {
		select {
		case <-tuned:
			tuned = nil
			if c.heartbeat > 0 {
				t := time.NewTicker(c.heartbeat / 2)
				defer t.Stop()
				tick = t.C
			}
		case <-c.quit:
			for {
				select {
				case b := <-c.out:
					arm()
					if _, err := w.Write(b); err != nil {
						return
					}
				default:
					w.Flush()
					return
				}
			}
		case b := <-c.out:
			// What waits is written in one go, then flushed.
			for more := true; more; {
				arm()
				if _, err := w.Write(b); err != nil {
					return
				}
				c.recycle(b)
				select {
				case b = <-c.out:
				default:
					more = false
				}
			}
			wrote = true
			if err := w.Flush(); err != nil {
				return
			}
		case <-tick:
			if !wrote {
				arm()
				w.Write(appendFrame(nil, frameHeartbeat, 0, nil))
				if err := w.Flush(); err != nil {
					return
				}
			}
			wrote = false
		}
	}
}

// stop ends the connection's writer and socket once.
func (c *conn) stop() {
	c.once.Do(func() {
		close(c.dead)
		c.nc.Close()
	})
}

// serve runs the connection until it ends.
func (c *conn) serve() {
	defer c.nc.Close()
	fr := &frameReader{r: bufio.NewReaderSize(c.nc, 64<<10), max: minFrameMax - frameOverhead}
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	var hdr [8]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return
	}
	if !bytes.Equal(hdr[:], protocolHeader) {
		// [spec §4.2.2] answer with the protocol we speak, then close.
		c.nc.Write(protocolHeader)
		c.log.Info("amqp: connection refused: not AMQP 0-9-1", "header", fmt.Sprintf("%q", hdr[:]))
		return
	}
	go c.write()
	defer c.finish()
	err := c.negotiate(fr)
	if err == nil {
		c.nc.SetDeadline(time.Time{})
		c.ready.Store(true)
		if c.capability("connection.blocked") {
			// Under blockMu, so that an unblocked sent meanwhile comes after.
			c.s.blockMu.Lock()
			if c.s.block.Load() {
				c.sendMethod(0, mConnBlocked, blockedReason)
			}
			c.s.blockMu.Unlock()
		}
		c.s.metrics.connections.Inc()
		defer c.s.metrics.connections.Dec()
		c.log.Debug("amqp: connection open", "user", c.user, "frame-max", c.frameMax, "channel-max", c.channelMax,
			"heartbeat", c.heartbeat)
		err = c.loop(fr)
	}
	c.fail(fr, err)
}

// fail ends the connection after err: an AMQP error is sent as
// connection.close and its close-ok awaited; other errors (the peer went
// away, a heartbeat missed) close the socket.
func (c *conn) fail(fr *frameReader, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.log.Debug("amqp: connection ended", "err", err)
		}
		return
	}
	if !ae.Conn { // a channel error where only a connection one fits
		ae = &Error{Code: codeChannelError, Text: ae.Text, Method: ae.Method, Conn: true}
	}
	if ae.Code != codeReplySuccess {
		c.s.metrics.errors.WithLabelValues(replyText[ae.Code]).Inc()
		c.log.Info("amqp: connection error", "user", c.user, "code", ae.Code, "text", ae.Text)
	}
	c.closeWith(ae)
	c.nc.SetReadDeadline(time.Now().Add(closeWait))
	for {
		f, ok := nextConnMethod(fr)
		if !ok {
			return
		}
		if m, err := decodeMethod(f.payload); err == nil && (m.id == mConnCloseOk || m.id == mConnClose) {
			if m.id == mConnClose {
				c.sendMethod(0, mConnCloseOk)
			}
			return
		}
	}
}

// nextConnMethod reads past every frame but a method frame on channel 0,
// and returns it; false when the connection fails first.
func nextConnMethod(fr *frameReader) (frame, bool) {
	for {
		f, err := fr.read()
		if err != nil {
			return frame{}, false
		}
		if f.typ == frameMethod && f.channel == 0 {
			return f, true
		}
	}
}

// closeWith sends connection.close with e's code and text.
func (c *conn) closeWith(e *Error) {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.sendMethod(0, mConnClose, e.Code, e.replyTextOf(), e.Method.class(), e.Method.method())
}

// finish releases what the connection held: its channels' unacknowledged
// deliveries go back to their queues, its consumers and exclusive queues
// go, and the writer drains and stops.
func (c *conn) finish() {
	c.mu.Lock()
	chs := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		chs = append(chs, ch)
	}
	c.channels = map[uint16]*channel{}
	owned := c.owned
	c.owned = nil
	c.mu.Unlock()
	for _, ch := range chs {
		ch.shutdown()
	}
	c.s.vhost.connClosed(c, owned)
	close(c.quit)
	select {
	case <-c.dead:
	case <-time.After(closeWait):
	}
	c.stop()
}

// own records an exclusive queue of the connection.
func (c *conn) own(q *queue) {
	c.mu.Lock()
	c.owned = append(c.owned, q)
	c.mu.Unlock()
}

// readMethod reads the next frame during negotiation, which must be
// method want on channel 0.
func (c *conn) readMethod(fr *frameReader, want methodID) (method, error) {
	for {
		f, err := fr.read()
		if err != nil {
			return method{}, err
		}
		if f.typ == frameHeartbeat {
			continue
		}
		if f.typ != frameMethod || f.channel != 0 {
			return method{}, connErr(codeUnexpectedFrame, fmt.Sprintf("frame type %d on channel %d while expecting %v", f.typ, f.channel, want))
		}
		m, err := decodeMethod(f.payload)
		if err != nil {
			return m, err
		}
		if m.id == mConnClose {
			c.sendMethod(0, mConnCloseOk)
			return m, io.EOF
		}
		if m.id != want {
			return m, connErr(codeCommandInvalid, fmt.Sprintf("%v while expecting %v", m.id, want)).on(m.id)
		}
		return m, nil
	}
}

// negotiate runs connection.start, tune and open [spec §4.2.4].
func (c *conn) negotiate(fr *frameReader) error {
	c.send(c.s.startFrame())
	m, err := c.readMethod(fr, mConnStartOk)
	if err != nil {
		return err
	}
	c.caps, _ = m.table(0)["capabilities"].(Table)
	if name, ok := m.table(0)["connection_name"].(string); ok {
		c.clientID = name
	}
	user, password, err := credentials(m.str(1), m.str(2))
	if err != nil {
		return err.(*Error).on(mConnStartOk)
	}
	if g := c.s.cfg.Guard; g != nil {
		if err := g.Authenticate(user, password); err != nil {
			c.s.metrics.refused.WithLabelValues("credentials").Inc()
			text := fmt.Sprintf("Login was refused using authentication mechanism %s: %v", m.str(1), err)
			if errors.Is(err, auth.ErrAnonymousNotAllowed) {
				text = "anonymous access is not allowed (auth.allow-anonymous): log in with a username and password"
			}
			c.log.Info("amqp: connection refused", "user", user, "err", err)
			// [RabbitMQ authentication_failure_close] a 403 close, not a bare drop.
			return connErr(codeAccessRefused, text).on(mConnStartOk)
		}
	}
	c.user = user
	hb := uint16(c.s.cfg.Heartbeat / time.Second)
	c.sendMethod(0, mConnTune, c.s.cfg.ChannelMax, c.s.cfg.FrameMax, hb)
	m, err = c.readMethod(fr, mConnTuneOk)
	if err != nil {
		return err
	}
	if chMax := m.u16(0); chMax != 0 && chMax < c.channelMax {
		c.channelMax = chMax
	} else if chMax > c.channelMax {
		return connErr(codeNotAllowed, fmt.Sprintf("channel-max %d is over the server's channel-max %d (amqp.channel-max)", chMax, c.s.cfg.ChannelMax)).on(mConnTuneOk)
	}
	switch fm := m.u32(1); {
	case fm == 0:
	case fm < minFrameMax:
		return connErr(codeNotAllowed, fmt.Sprintf("frame-max %d is under the minimum %d", fm, minFrameMax)).on(mConnTuneOk)
	case fm > c.s.cfg.FrameMax:
		return connErr(codeNotAllowed, fmt.Sprintf("frame-max %d is over the server's frame-max %d (amqp.frame-max)", fm, c.s.cfg.FrameMax)).on(mConnTuneOk)
	default:
		c.frameMax = fm
	}
	c.heartbeat = time.Duration(m.u16(2)) * time.Second
	close(c.tuned)
	fr.max = c.frameMax - frameOverhead
	m, err = c.readMethod(fr, mConnOpen)
	if err != nil {
		return err
	}
	if vh := m.str(0); vh != "/" {
		return connErr(codeNotAllowed, fmt.Sprintf("vhost '%s' not found: Ferry serves vhost '/' only", vh)).on(mConnOpen)
	}
	c.sendMethod(0, mConnOpenOk, "")
	return nil
}

// startFrame is connection.start: the version, the server's properties
// with the RabbitMQ capabilities Ferry has, and the SASL mechanisms.
func (s *Server) startFrame() []byte {
	props := Table{
		"product":   "Ferry",
		"version":   s.cfg.Version,
		"platform":  "Go",
		"copyright": "Ferry authors",
		"capabilities": Table{
			"publisher_confirms":           true,
			"exchange_exchange_bindings":   false,
			"basic.nack":                   true,
			"consumer_cancel_notify":       true,
			"connection.blocked":           true,
			"consumer_priorities":          false,
			"authentication_failure_close": true,
			"per_consumer_qos":             true,
			"direct_reply_to":              false,
		},
	}
	return appendMethodFrame(nil, 0, mConnStart, uint8(0), uint8(9), props, "PLAIN AMQPLAIN", "en_US")
}

// credentials reads a SASL response: PLAIN is "\0user\0password"
// (RFC 4616, authzid ignored), AMQPLAIN a field table's body with LOGIN and
// PASSWORD.
func credentials(mechanism, response string) (user, password string, err error) {
	switch mechanism {
	case "PLAIN":
		parts := strings.SplitN(response, "\x00", 3)
		if len(parts) != 3 {
			return "", "", connErr(codeAccessRefused, "malformed PLAIN response: want \\0user\\0password")
		}
		return parts[1], parts[2], nil
	case "AMQPLAIN":
		b := binary.BigEndian.AppendUint32(nil, uint32(len(response)))
		d := decoder{b: append(b, response...)}
		t := d.table()
		if d.err != nil {
			return "", "", connErr(codeAccessRefused, fmt.Sprintf("malformed AMQPLAIN response: %v", d.err))
		}
		user, _ = t["LOGIN"].(string)
		password, _ = t["PASSWORD"].(string)
		return user, password, nil
	}
	return "", "", connErr(codeAccessRefused, fmt.Sprintf("unsupported authentication mechanism '%s': PLAIN or AMQPLAIN", mechanism))
}

// loop reads frames until the connection ends.
func (c *conn) loop(fr *frameReader) error {
	var armed time.Time
	for {
		if c.heartbeat > 0 && !fr.buffered() {
			// [spec §4.2.7] a peer silent for two heartbeats is gone. The
			// deadline moves on at most every half heartbeat, not per frame
			// (each move is a timer update), so it is two and a half
			// heartbeats after it was last moved: at least two of silence.
			// A frame in the buffer whole needs no deadline (nor a look at
			// the clock).
			if now := time.Now(); now.Sub(armed) >= c.heartbeat/2 {
				c.nc.SetReadDeadline(now.Add(2*c.heartbeat + c.heartbeat/2))
				armed = now
			}
		}
		f, err := fr.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Not a bare drop: the close says why, in case the peer
				// is only slow, and close-ok is awaited as for any error.
				return connErr(codeConnectionForced, fmt.Sprintf("missed heartbeats from client: nothing received in %v (twice the negotiated heartbeat of %v)",
					2*c.heartbeat, c.heartbeat))
			}
			return err
		}
		if err := c.frame(f); err != nil {
			return err
		}
	}
}

// errClosedByPeer ends the loop after the peer's connection.close.
var errClosedByPeer = io.EOF

// frame handles one frame.
func (c *conn) frame(f frame) error {
	if f.typ == frameHeartbeat {
		if f.channel != 0 {
			return connErr(codeFrameError, fmt.Sprintf("heartbeat frame on channel %d", f.channel))
		}
		return nil
	}
	if f.channel == 0 {
		if f.typ != frameMethod {
			return connErr(codeUnexpectedFrame, fmt.Sprintf("frame type %d on channel 0", f.typ))
		}
		m, err := decodeMethod(f.payload)
		if err != nil {
			return err
		}
		switch m.id {
		case mConnClose:
			c.sendMethod(0, mConnCloseOk)
			return errClosedByPeer
		case mConnCloseOk:
			return errClosedByPeer
		case mConnBlocked, mConnUnblocked:
			return nil
		case mConnUpdateSecret:
			return connErr(codeNotImplemented, "connection.update-secret is not supported").on(m.id)
		}
		return connErr(codeCommandInvalid, fmt.Sprintf("%v on channel 0", m.id)).on(m.id)
	}
	c.mu.Lock()
	ch := c.channels[f.channel]
	c.mu.Unlock()
	if ch == nil {
		if f.typ != frameMethod {
			return connErr(codeChannelError, fmt.Sprintf("frame type %d on channel %d, which is not open", f.typ, f.channel))
		}
		m, err := decodeMethod(f.payload)
		if err != nil {
			return err
		}
		if m.id != mChanOpen {
			return connErr(codeChannelError, fmt.Sprintf("%v on channel %d, which is not open", m.id, f.channel)).on(m.id)
		}
		if f.channel > c.channelMax {
			return connErr(codeNotAllowed, fmt.Sprintf("channel %d is over channel-max %d (amqp.channel-max)", f.channel, c.channelMax)).on(m.id)
		}
		ch = newChannel(c, f.channel)
		c.mu.Lock()
		c.channels[f.channel] = ch
		c.mu.Unlock()
		c.sendMethod(f.channel, mChanOpenOk, "")
		return nil
	}
	return ch.frame(f)
}

// dropChannel forgets a closed channel.
func (c *conn) dropChannel(id uint16) {
	c.mu.Lock()
	delete(c.channels, id)
	c.mu.Unlock()
}
