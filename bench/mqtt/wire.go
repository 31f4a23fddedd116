package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal MQTT 3.1.1 client, written against the specification, with
// buffered writes so that many PUBLISH packets go out in one write and
// QoS 1 publishes can be pipelined. It speaks only what the benchmark needs:
// CONNECT, PUBLISH (QoS 0 and 1), PUBACK, SUBSCRIBE, DISCONNECT.

const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingresp   = 13
	pktDisconnect = 14
)

type wire struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte // the body of the last packet read
	hdr [5]byte
}

// dialMQTT connects and completes the CONNECT/CONNACK exchange with a clean
// session and no keep-alive; bufSize is its read and write buffers' size.
func dialMQTT(addr, clientID string, bufSize int) (*wire, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	w := &wire{c: c, r: bufio.NewReaderSize(c, bufSize), w: bufio.NewWriterSize(c, bufSize)}
	body := make([]byte, 0, 16+len(clientID))
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 0) // level 4 (3.1.1), clean session, keep-alive 0
	body = appendString(body, clientID)
	w.writePacket(pktConnect<<4, body)
	if err := w.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := w.read()
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if typ>>4 != pktConnack || len(b) < 2 || b[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("connect refused: packet %#x %v", typ, b)
	}
	return w, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// writeHeader buffers a fixed header for a packet of n more bytes.
func (w *wire) writeHeader(first byte, n int) {
	h := w.hdr[:0]
	h = append(h, first)
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		h = append(h, d)
		if n == 0 {
			break
		}
	}
	w.w.Write(h)
}

func (w *wire) writePacket(first byte, body []byte) {
	w.writeHeader(first, len(body))
	w.w.Write(body)
}

// writePublish buffers a PUBLISH; id is ignored at QoS 0.
func (w *wire) writePublish(topic string, qos byte, id uint16, payload []byte) {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	w.writeHeader(pktPublish<<4|qos<<1, n)
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(len(topic)))
	w.w.Write(b[:])
	w.w.WriteString(topic)
	if qos > 0 {
		binary.BigEndian.PutUint16(b[:], id)
		w.w.Write(b[:])
	}
	w.w.Write(payload)
}

func (w *wire) writePuback(id uint16) {
	w.w.Write([]byte{pktPuback << 4, 2, byte(id >> 8), byte(id)})
}

func (w *wire) subscribe(filter string, qos byte) error {
	body := []byte{0, 1}
	body = appendString(body, filter)
	body = append(body, qos)
	w.writePacket(pktSubscribe<<4|2, body)
	if err := w.w.Flush(); err != nil {
		return err
	}
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer w.c.SetReadDeadline(time.Time{})
	for {
		typ, b, err := w.read()
		if err != nil {
			return fmt.Errorf("suback: %w", err)
		}
		if typ>>4 == pktSuback {
			if len(b) < 3 || b[2] > 2 {
				return fmt.Errorf("subscription to %q refused: %v", filter, b)
			}
			return nil
		}
	}
}

// read returns the next packet's first byte and body; the body is valid
// until the next read.
func (w *wire) read() (byte, []byte, error) {
	first, err := w.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		d, err := w.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
		shift += 7
		if shift > 21 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	w.buf = w.buf[:n]
	if _, err := io.ReadFull(w.r, w.buf); err != nil {
		return 0, nil, err
	}
	return first, w.buf, nil
}

// parsePublish splits a PUBLISH body into its QoS, packet id and payload.
func parsePublish(first byte, b []byte) (qos byte, id uint16, payload []byte, ok bool) {
	qos = first >> 1 & 3
	if len(b) < 2 {
		return 0, 0, nil, false
	}
	off := 2 + int(binary.BigEndian.Uint16(b))
	if qos > 0 {
		if len(b) < off+2 {
			return 0, 0, nil, false
		}
		id = binary.BigEndian.Uint16(b[off:])
		off += 2
	}
	if len(b) < off {
		return 0, 0, nil, false
	}
	return qos, id, b[off:], true
}

func (w *wire) close() {
	w.w.Write([]byte{pktDisconnect << 4, 0})
	w.w.Flush()
	w.c.Close()
}
