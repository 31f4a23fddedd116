package mqtt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrymq/ferry/internal/lograte"
)

// What a client cannot exceed, checked where it is cheapest: connections at
// accept, the first packet before the engine sees a byte of it, every
// packet's size from its fixed header before it is buffered, topics before
// any lookup. See "Limits" in docs/mqtt.md.

// Each limit, as the key that changes it: the label of
// ferry_mqtt_limit_hits_total and what the logs and reason strings name.
const (
	limitConnectTimeout = "mqtt.connect-timeout"
	limitConnectSize    = "mqtt.max-connect-size"
	limitPacketSize     = "mqtt.max-packet-size"
	limitTopicLevels    = "mqtt.max-topic-levels"
	limitTopicLength    = "mqtt.max-topic-length"
	limitConnections    = "mqtt.max-connections"
)

// Accept back-off after a temporary error: 5 ms doubling to 1 s, reset by
// the next accepted connection.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// overflowSlots is how many connections past mqtt.max-connections a
// listener keeps at once just long enough to read their CONNECT and answer
// "server busy"; past those, a connection is closed as it is accepted.
const overflowSlots = 16

// guardedListener is a listener's socket with its limits: at most max
// connections open at once (plus overflowSlots answered "server busy"), and
// an accept loop that outlives temporary errors (out of file descriptors,
// buffers or memory; an aborted handshake) by retrying with a back-off. Its
// state is what Server.ListenerHealth reports.
type guardedListener struct {
	net.Listener
	id     string
	max    int64
	log    *slog.Logger
	closed chan struct{}
	once   sync.Once

	open, overflow atomic.Int64
	refused        atomic.Int64 // connections refused for max
	acceptErrors   atomic.Int64 // temporary accept errors
	refusedLog     lograte.Limiter
	errLog         lograte.Limiter

	mu      sync.Mutex
	downErr error     // why Accept is failing now; nil while it accepts
	since   time.Time // when it began failing
	stopped bool      // Accept returned for good
}

func newGuardedListener(id string, ln net.Listener, max int64, log *slog.Logger) *guardedListener {
	return &guardedListener{Listener: ln, id: id, max: max, log: log, closed: make(chan struct{}),
		refusedLog: lograte.Limiter{Every: 10 * time.Second}, errLog: lograte.Limiter{Every: 10 * time.Second}}
}

// Accept returns the next connection within the listener's limits. It
// returns an error only once the listener is closed or failed for good.
func (l *guardedListener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.closed:
				l.setStopped(nil)
				return nil, net.ErrClosed
			default:
			}
			if !temporary(err) {
				l.setStopped(err)
				l.log.Error("mqtt: listener failed; it accepts no more connections", "listener", l.id, "addr", l.Addr().String(), "err", err)
				return nil, err
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			l.acceptErrors.Add(1)
			l.setDown(err)
			if ok, held := l.errLog.Allow(); ok {
				l.log.Warn("mqtt: accepting a connection failed; retrying", "listener", l.id, "err", err,
					"retry_in", backoff, "errors_held_back", held)
			}
			t := time.NewTimer(backoff)
			select {
			case <-l.closed:
				t.Stop()
				l.setStopped(nil)
				return nil, net.ErrClosed
			case <-t.C:
			}
			continue
		}
		if backoff > 0 {
			backoff = 0
			l.setDown(nil)
			l.log.Info("mqtt: listener accepting again", "listener", l.id)
		}
		gc := &guardedConn{Conn: c, l: l}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			if ok, held := l.refusedLog.Allow(); ok {
				l.log.Warn("mqtt: connection refused: the listener is at its maximum", "listener", l.id,
					"remote", c.RemoteAddr().String(), "limit", l.max, "key", limitConnections, "refusals_held_back", held)
			}
			if l.overflow.Add(1) > overflowSlots {
				l.overflow.Add(-1)
				c.Close()
				continue
			}
			gc.over = true // read its CONNECT, answer "server busy"
		}
		return gc, nil
	}
}

func (l *guardedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *guardedListener) setDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.downErr, l.since = nil, time.Time{}
		return
	}
	if l.downErr == nil {
		l.since = time.Now()
	}
	l.downErr = err
}

func (l *guardedListener) setStopped(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if err != nil {
		l.downErr = err
		if l.since.IsZero() {
			l.since = time.Now()
		}
	}
}

// health is nil while the listener accepts connections.
func (l *guardedListener) health() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopped && l.downErr != nil:
		return fmt.Errorf("mqtt: %s listener on %s failed: %w", l.id, l.Addr(), l.downErr)
	case l.stopped:
		return fmt.Errorf("mqtt: %s listener on %s is closed", l.id, l.Addr())
	case l.downErr != nil:
		return fmt.Errorf("mqtt: %s listener on %s cannot accept connections since %s: %w", l.id, l.Addr(),
			l.since.UTC().Format(time.RFC3339), l.downErr)
	}
	return nil
}

// temporary reports whether an accept error may go away by itself: too
// many open files, no buffers or memory for now, a connection aborted
// before it was accepted, a timeout.
func temporary(err error) bool {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED,
			syscall.EINTR, syscall.EAGAIN, syscall.ETIMEDOUT, syscall.EPROTO, syscall.EPERM:
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// guardedConn is a connection counted against its listener's maximum until
// it is closed.
type guardedConn struct {
	net.Conn
	l    *guardedListener
	over bool // past the maximum: to be answered "server busy"
	done atomic.Bool
}

// SyscallConn is the socket's, for the writes and waits of a sendConn that
// do not block; an error when the connection has no descriptor of its own.
func (c *guardedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("mqtt: a %T has no descriptor of its own", c.Conn)
}

func (c *guardedConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		if c.over {
			c.l.overflow.Add(-1)
		} else {
			c.l.open.Add(-1)
		}
	}
	return c.Conn.Close()
}

// overLimit reports whether c (or the connection it wraps) was accepted
// past its listener's maximum.
func overLimit(c net.Conn) bool {
	for range 4 {
		if gc, ok := c.(*guardedConn); ok {
			return gc.over
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = u.NetConn()
	}
	return false
}

// limitError is a limit hit, naming its key.
type limitError struct {
	key string
	msg string
}

func (e *limitError) Error() string { return e.msg + " (" + e.key + ")" }

// hit is the limit err names, or "".
func hit(err error) string {
	var le *limitError
	if errors.As(err, &le) {
		return le.key
	}
	return ""
}

// errNotConnect: the first packet of a connection must be a CONNECT.
var errNotConnect = errors.New("mqtt: the first packet is not a CONNECT [MQTT-3.1.0-1]")

// connectHead is what readConnect learnt of a connection's first packet.
type connectHead struct {
	version byte // protocol level: 3, 4 (3.1.1) or 5; 0 when unknown
	size    int  // the whole packet's size, as declared
}

// readConnect reads a connection's first packet, which must be a CONNECT of
// at most limit bytes in all, and returns its bytes. The buffer grows with
// what arrives, never to the declared length at once; a CONNECT declared
// over limit is refused from its fixed header and the first bytes of its
// variable header (enough to know its protocol version), the rest unread.
func readConnect(r io.Reader, limit int) ([]byte, connectHead, error) {
	var h connectHead
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return nil, h, err
	}
	if hdr[0]>>4 != 1 { // CONNECT; its flags are checked by the engine
		return nil, h, errNotConnect
	}
	rem, n := 0, 1
	for {
		if n == len(hdr) {
			return nil, h, errors.New("mqtt: malformed remaining length in CONNECT (more than 4 bytes, 1.5.5)")
		}
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			return nil, h, err
		}
		rem |= int(hdr[n]&0x7f) << (7 * (n - 1))
		n++
		if hdr[n-1]&0x80 == 0 {
			break
		}
	}
	h.size = n + rem
	buf := make([]byte, n, n+min(rem, 256))
	copy(buf, hdr[:n])
	// The variable header starts with the protocol name (2-byte length,
	// "MQTT" or "MQIsdp") and the protocol level: at most 9 bytes, read
	// exactly, so that a CONNECT refused for its size can be answered in
	// its version.
	if rem >= 2 {
		buf = buf[:n+2]
		if _, err := io.ReadFull(r, buf[n:]); err != nil {
			return nil, h, err
		}
		if l := int(buf[n])<<8 | int(buf[n+1]); l <= 6 && rem >= 3+l {
			buf = buf[:n+3+l]
			if _, err := io.ReadFull(r, buf[n+2:]); err != nil {
				return nil, h, err
			}
			h.version = buf[n+2+l]
		}
	}
	if h.size > limit {
		return nil, h, &limitError{key: limitConnectSize,
			msg: fmt.Sprintf("CONNECT of %d bytes, over the %d allowed before login", h.size, limit)}
	}
	for len(buf) < h.size {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(h.size, 2*cap(buf)))
			copy(nb, buf)
			buf = nb
		}
		m, err := r.Read(buf[len(buf):min(h.size, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < h.size {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, h, err
		}
	}
	return buf, h, nil
}

// connack returns a CONNACK refusing a connection with a v5 reason code
// (and, for MQTT 5, its reason string), or nil where MQTT 3 has no code for
// it: the connection is then just closed.
func connack(version byte, code byte, reason string) []byte {
	if version != 5 {
		if code == 0x89 || code == 0x88 { // server busy, server unavailable
			return []byte{0x20, 2, 0, 3} // 3: server unavailable
		}
		return nil
	}
	props := reasonString(reason)
	b := []byte{0x20, byte(3 + len(props)), 0, code, byte(len(props))}
	return append(b, props...)
}

// reasonString is the properties of an MQTT 5 CONNACK or DISCONNECT with
// reason as their Reason String, cut to maxReason (120) bytes so that the
// packets keep one-byte lengths.
func reasonString(reason string) []byte {
	reason = cleanReason(reason)
	return append([]byte{0x1f, 0, byte(len(reason))}, reason...)
}

// disconnect returns an MQTT 5 DISCONNECT with reason code and string.
func disconnect(code byte, reason string) []byte {
	props := reasonString(reason)
	b := []byte{0xe0, byte(2 + len(props)), code, byte(len(props))}
	return append(b, props...)
}

// limitConn is a client's connection once its CONNECT is read: it hands
// the engine that CONNECT first, then the stream, following the packets'
// fixed headers as they pass, so that a packet declared over the maximum
// size is refused before the engine allocates a byte for it: an MQTT 5
// client gets DISCONNECT 0x95 (packet too large) [MQTT-3.2.2-15]
// [MQTT-4.13.2-1], any client a closed connection.
type limitConn struct {
	net.Conn
	pending []byte // the CONNECT, not yet handed over
	version byte
	max     int
	onHit   func(key string, err error)

	// the fixed header being read; skip is what is left of a packet's body
	hdrLen, rem int
	skip        int
	err         error
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if k, ferr := c.follow(p[:n]); ferr != nil {
		c.err = ferr
		key := hit(ferr)
		c.onHit(key, ferr)
		if c.version == 5 && key == limitPacketSize {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Conn.Write(disconnect(0x95, ferr.Error())) // [MQTT-4.13.2-1]
		}
		if k > 0 {
			return k, nil // the whole packets before it; the error comes next
		}
		return 0, ferr
	}
	return n, err
}

// follow walks b through the packet framing and returns, on a packet over
// the maximum (or a malformed length), how many bytes of b came before that
// packet, and the error.
func (c *limitConn) follow(b []byte) (int, error) {
	start := 0 // where the packet whose header is being read began in b
	for i := 0; i < len(b); {
		if c.skip > 0 {
			k := min(c.skip, len(b)-i)
			c.skip -= k
			i += k
			continue
		}
		if c.hdrLen == 0 {
			start = i
			c.hdrLen, c.rem = 1, 0
			i++
			continue
		}
		x := b[i]
		i++
		if c.hdrLen == 5 {
			return start, errors.New("mqtt: malformed remaining length (more than 4 bytes, 1.5.5)")
		}
		c.rem |= int(x&0x7f) << (7 * (c.hdrLen - 1))
		c.hdrLen++
		if x&0x80 != 0 {
			continue
		}
		if size := c.hdrLen + c.rem; size > c.max {
			return start, &limitError{key: limitPacketSize,
				msg: fmt.Sprintf("packet of %d bytes, over the maximum packet size of %d", size, c.max)}
		}
		c.skip, c.hdrLen = c.rem, 0
	}
	return 0, nil
}

// topicLimit checks a topic name or filter against the levels and length
// allowed, cheaply: its length, then a count of its separators.
func topicLimit(topic string, maxLevels, maxLength int) error {
	if len(topic) > maxLength {
		return &limitError{key: limitTopicLength,
			msg: fmt.Sprintf("topic of %d bytes, over the %d allowed", len(topic), maxLength)}
	}
	if n := strings.Count(topic, "/") + 1; n > maxLevels {
		return &limitError{key: limitTopicLevels,
			msg: fmt.Sprintf("topic of %d levels, over the %d allowed", n, maxLevels)}
	}
	return nil
}
