package amqp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"time"
)

// maxRefusing bounds the connections being refused at once: past it a
// connection over amqp.max-connections is closed at accept, without a word,
// so that a flood of them costs no more than a few goroutines.
const maxRefusing = 64

// refuseWait bounds how long a refusal may take in all.
const refuseWait = 5 * time.Second

// refuse tells a connection over amqp.max-connections why it is turned
// away, as RabbitMQ does at its connection limits: it answers the protocol
// header with connection.start, reads start-ok and sends connection.close
// 530 NOT_ALLOWED naming the limit (clients such as amqp091-go report the
// server's close from the handshake), then waits a moment for close-ok.
// Nothing the client sends is trusted: its credentials are not checked.
func (s *Server) refuse(nc net.Conn) {
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		nc.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.refusing.Add(-1)
		nc.Close()
		return
	}
	s.refused[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.refusing.Add(-1)
		defer func() {
			nc.Close()
			s.mu.Lock()
			delete(s.refused, nc)
			s.mu.Unlock()
		}()
		nc.SetDeadline(time.Now().Add(min(s.cfg.HandshakeTimeout, refuseWait)))
		fr := &frameReader{r: bufio.NewReaderSize(nc, 4096), max: minFrameMax - frameOverhead}
		var hdr [8]byte
		if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
			return
		}
		if !bytes.Equal(hdr[:], protocolHeader) {
			nc.Write(protocolHeader)
			return
		}
		if _, err := nc.Write(s.startFrame()); err != nil {
			return
		}
		if _, ok := nextConnMethod(fr); !ok { // connection.start-ok
			return
		}
		e := connErr(codeNotAllowed, fmt.Sprintf("connection limit reached: %d connections are open, the most the broker takes (amqp.max-connections)",
			s.cfg.MaxConnections)).on(mConnStartOk)
		closeM := appendMethodFrame(nil, 0, mConnClose, e.Code, e.replyTextOf(), e.Method.class(), e.Method.method())
		if _, err := nc.Write(closeM); err != nil {
			return
		}
		for {
			f, ok := nextConnMethod(fr)
			if !ok {
				return
			}
			if m, err := decodeMethod(f.payload); err == nil && m.id == mConnCloseOk {
				return
			}
		}
	}()
}
