package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Both listeners disconnect their clients at Close with the function they
// are given (Server.disconnectListener), not with the engine's close
// callback: that one lists the clients with Clients.GetByListener, which
// read-locks the client map twice (mochi v2.7.9) and deadlocks a shutdown
// when a client leaving at that moment asks for the write lock in between.

// serveFn serves one accepted connection: Server.serveConn.
type serveFn func(listener string, conn net.Conn, establish listeners.EstablishFn) error

// streamListener serves MQTT over a stream listener (TCP, or TLS over
// TCP). It is bound before it is added, so ":0" reports its real port. Its
// listener is a guardedListener underneath, whose Accept retries temporary
// errors itself: an error here means closed, or failed for good.
type streamListener struct {
	id         string
	ln         net.Listener
	disconnect func(listener string) // its clients, at Close
	serve      serveFn
	once       sync.Once
	wg         sync.WaitGroup
	log        *slog.Logger
}

func (l *streamListener) Init(log *slog.Logger) error { l.log = log; return nil }
func (l *streamListener) ID() string                  { return l.id }
func (l *streamListener) Address() string             { return l.ln.Addr().String() }
func (l *streamListener) Protocol() string            { return "tcp" }

func (l *streamListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return // logged by the guardedListener
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.serve(l.id, conn, establish); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("mqtt: connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *streamListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		l.ln.Close()
		l.disconnect(l.id)
	})
}

// wsListener serves MQTT over WebSocket on the path /mqtt, one binary
// message or more per MQTT packet stream ("mqtt" subprotocol).
type wsListener struct {
	id         string
	ln         net.Listener
	disconnect func(listener string) // its clients, at Close
	serve      serveFn
	srv        *http.Server
	upgrader   websocket.Upgrader
	log        *slog.Logger
	once       sync.Once
	mu         sync.Mutex
	establish  listeners.EstablishFn
}

// wsMaxHeaderBytes caps the headers of a WebSocket upgrade request, read
// before any login (net/http's default is 1 MiB).
const wsMaxHeaderBytes = 16 << 10

// newWSListener serves MQTT over WebSocket on ln; an HTTP connection that
// sends no request, or no CONNECT after its upgrade, within connectTimeout
// is closed.
func newWSListener(id string, ln net.Listener, disconnect func(string), serve serveFn, connectTimeout time.Duration, log *slog.Logger) *wsListener {
	l := &wsListener{id: id, ln: ln, disconnect: disconnect, serve: serve, log: log, upgrader: websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		CheckOrigin:  func(*http.Request) bool { return true },
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/mqtt", l.handle)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: connectTimeout, IdleTimeout: connectTimeout,
		MaxHeaderBytes: wsMaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return l
}

func (l *wsListener) Init(*slog.Logger) error { return nil }
func (l *wsListener) ID() string              { return l.id }
func (l *wsListener) Address() string         { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string        { return "ws" }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("mqtt: websocket listener failed", "listener", l.id, "err", err)
	}
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer c.Close()
	l.mu.Lock()
	establish := l.establish
	l.mu.Unlock()
	if err := l.serve(l.id, &wsConn{Conn: c.NetConn(), c: c}, establish); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("mqtt: websocket connection ended", "remote", r.RemoteAddr, "err", err)
	}
}

func (l *wsListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
		l.disconnect(l.id)
	})
}

// wsConn is a WebSocket connection as a byte stream: reads run across
// binary messages, each write is one binary message.
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

// NetConn is the connection under the WebSocket.
func (ws *wsConn) NetConn() net.Conn { return ws.Conn }

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, fmt.Errorf("mqtt: websocket message of type %d: MQTT goes in binary messages [MQTT-6.0.0-1]", op)
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.wm.Lock()
	defer ws.wm.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
