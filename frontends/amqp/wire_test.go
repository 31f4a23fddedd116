package amqp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestMethodRoundTrip(t *testing.T) {
	args := Table{"s": "v", "n": int32(-3), "b": true, "t": Table{"x": int64(1)}, "a": []any{"y", uint8(2)}}
	p := appendMethod(nil, mQDeclare, uint16(0), "q", false, true, false, true, false, args)
	m, err := decodeMethod(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.id != mQDeclare || m.str(1) != "q" || m.bit(2) || !m.bit(3) || m.bit(4) || !m.bit(5) || m.bit(6) {
		t.Fatalf("decoded %+v", m)
	}
	tb := m.table(7)
	if tb["s"] != "v" || tb["n"] != int32(-3) || tb["b"] != true || tb["t"].(Table)["x"] != int64(1) || tb["a"].([]any)[1] != uint8(2) {
		t.Fatalf("table %+v", tb)
	}
	props := properties{ContentType: "text/plain", Headers: Table{"k": "v"}, DeliveryMode: 2, MessageID: "id",
		Timestamp: time.Unix(100, 0).UTC()}
	h, err := decodeHeader(appendHeader(nil, 5, appendProperties(nil, &props)))
	if err != nil {
		t.Fatal(err)
	}
	if h.bodySize != 5 || h.props.ContentType != "text/plain" || h.props.Headers["k"] != "v" || h.props.DeliveryMode != 2 ||
		h.props.MessageID != "id" || !h.props.Timestamp.Equal(props.Timestamp) {
		t.Fatalf("header %+v", h)
	}
}

func TestDecodeRefusesGarbage(t *testing.T) {
	for name, p := range map[string][]byte{
		"short":          {0, 10},
		"unknown method": {0, 99, 0, 1},
		"truncated str":  appendMethod(nil, mQDeclare, uint16(0), "queue", false, false, false, false, false, Table{})[:7],
		"table too long": {0, 50, 0, 10, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
	} {
		if _, err := decodeMethod(p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzDecodeMethod(f *testing.F) {
	f.Add(appendMethod(nil, mQDeclare, uint16(0), "q", false, true, false, true, false, Table{"a": []any{Table{"b": 1}}}))
	f.Add(appendMethod(nil, mConnStartOk, Table{"capabilities": Table{"x": true}}, "PLAIN", "\x00u\x00p", "en_US"))
	f.Add(appendMethod(nil, mBasicPublish, uint16(0), "amq.topic", "a.b", true, false))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := decodeMethod(p)
		if err != nil {
			return
		}
		// What decodes encodes again to what decodes the same.
		again, err := decodeMethod(appendMethod(nil, m.id, m.args...))
		if err != nil || len(again.args) != len(m.args) {
			t.Fatalf("%v re-encoded: %v", m.id, err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendMethodFrame(nil, 1, mChanOpen, ""))
	f.Add(appendFrame(nil, frameHeader, 1, appendHeader(nil, 3, appendProperties(nil, &properties{Headers: Table{"a": "b"}}))))
	f.Add(appendFrame(nil, frameHeartbeat, 0, nil))
	f.Fuzz(func(t *testing.T, p []byte) {
		fr := &frameReader{r: bufio.NewReader(bytes.NewReader(p)), max: 4096}
		for {
			fm, err := fr.read()
			if err != nil {
				return
			}
			if len(fm.payload) > 4096 {
				t.Fatalf("frame of %d bytes over the bound", len(fm.payload))
			}
			switch fm.typ {
			case frameMethod:
				decodeMethod(fm.payload)
			case frameHeader:
				decodeHeader(fm.payload)
			}
		}
	})
}

// rawConn is a hand-driven AMQP client for bad-input tests.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	fr *frameReader
}

// dialRawStart dials f, sends the protocol header and reads
// connection.start: the opening every raw handshake shares. The
// connection is closed when the test ends.
func dialRawStart(t *testing.T, f *ferry) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", f.srv.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawConn{t: t, nc: nc, fr: &frameReader{r: bufio.NewReader(nc), max: 1 << 20}}
	nc.Write(protocolHeader)
	c.expect(mConnStart)
	return c
}

// dialRaw opens a connection up to connection.open-ok.
func dialRaw(t *testing.T, f *ferry) *rawConn {
	t.Helper()
	c := dialRawStart(t, f)
	c.method(0, mConnStartOk, Table{}, "PLAIN", "\x00guest\x00guest", "en_US")
	c.expect(mConnTune)
	c.method(0, mConnTuneOk, uint16(16), uint32(8192), uint16(0))
	c.method(0, mConnOpen, "/", "", false)
	c.expect(mConnOpenOk)
	return c
}

func (c *rawConn) method(ch uint16, id methodID, args ...any) {
	c.nc.Write(appendMethodFrame(nil, ch, id, args...))
}

func (c *rawConn) read() method {
	c.t.Helper()
	for {
		f, err := c.fr.read()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.typ != frameMethod {
			continue
		}
		m, err := decodeMethod(f.payload)
		if err != nil {
			c.t.Fatal(err)
		}
		return m
	}
}

func (c *rawConn) expect(id methodID) method {
	c.t.Helper()
	m := c.read()
	if m.id != id {
		c.t.Fatalf("got %v %v, want %v", m.id, m.args, id)
	}
	return m
}

// expectClosed reads connection.close with code, answers close-ok, and
// sees the socket closed.
func (c *rawConn) expectClosed(code uint16) {
	c.t.Helper()
	m := c.expect(mConnClose)
	if m.u16(0) != code {
		c.t.Fatalf("connection.close %d %q, want %d", m.u16(0), m.str(1), code)
	}
	c.method(0, mConnCloseOk)
	// A reset is a close too: after a frame error the server does not read
	// the rest of the bad frame, and a socket closed with unread bytes
	// resets.
	if _, err := io.ReadAll(c.nc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("socket not closed after close-ok: %v", err)
	}
}

func TestBadInputClosesTheRightScope(t *testing.T) {
	f := startFerry(t, Config{FrameMax: 8192})
	bystander := openChannel(t, f.dial(t))
	if _, err := bystander.QueueDeclare("still", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("wrong frame end", func(t *testing.T) {
		c := dialRaw(t, f)
		b := appendMethodFrame(nil, 1, mChanOpen, "")
		b[len(b)-1] = 0x00
		c.nc.Write(b)
		c.expectClosed(codeFrameError)
	})
	t.Run("oversized frame", func(t *testing.T) {
		c := dialRaw(t, f)
		c.nc.Write(appendFrame(nil, frameBody, 1, make([]byte, 9000)))
		c.expectClosed(codeFrameError)
	})
	t.Run("truncated method", func(t *testing.T) {
		c := dialRaw(t, f)
		c.nc.Write(appendFrame(nil, frameMethod, 1, []byte{0, 20}))
		c.expectClosed(codeSyntaxError)
	})
	t.Run("method on a closed channel", func(t *testing.T) {
		c := dialRaw(t, f)
		c.method(3, mQDeclare, uint16(0), "q", false, false, false, false, false, Table{})
		c.expectClosed(codeChannelError)
	})
	t.Run("channel over channel-max", func(t *testing.T) {
		c := dialRaw(t, f)
		c.method(17, mChanOpen, "")
		c.expectClosed(codeNotAllowed)
	})
	t.Run("unknown method", func(t *testing.T) {
		c := dialRaw(t, f)
		c.nc.Write(appendFrame(nil, frameMethod, 0, []byte{0, 77, 0, 1}))
		c.expectClosed(codeNotImplemented)
	})
	t.Run("content without publish", func(t *testing.T) {
		c := dialRaw(t, f)
		c.method(1, mChanOpen, "")
		c.expect(mChanOpenOk)
		c.nc.Write(appendFrame(nil, frameBody, 1, []byte("x")))
		c.expectClosed(codeUnexpectedFrame)
	})
	t.Run("channel error keeps the connection", func(t *testing.T) {
		c := dialRaw(t, f)
		c.method(1, mChanOpen, "")
		c.expect(mChanOpenOk)
		c.method(1, mQDeclare, uint16(0), "nope", true, false, false, false, false, Table{})
		m := c.expect(mChanClose)
		if m.u16(0) != codeNotFound || m.u16(2) != 50 || m.u16(3) != 10 {
			t.Fatalf("channel.close %v", m.args)
		}
		c.method(1, mChanCloseOk)
		c.method(1, mChanOpen, "")
		c.expect(mChanOpenOk)
	})
	t.Run("wrong vhost", func(t *testing.T) {
		c := dialRawStart(t, f)
		c.method(0, mConnStartOk, Table{}, "PLAIN", "\x00guest\x00guest", "en_US")
		c.expect(mConnTune)
		c.method(0, mConnTuneOk, uint16(0), uint32(0), uint16(0))
		c.method(0, mConnOpen, "/other", "", false)
		c.expectClosed(codeNotAllowed)
	})
	t.Run("not AMQP", func(t *testing.T) {
		nc, err := net.Dial("tcp", f.srv.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		nc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		got, _ := io.ReadAll(nc)
		if !bytes.Equal(got, protocolHeader) {
			t.Fatalf("answered %q, want the protocol header", got)
		}
	})
	if _, err := bystander.QueueDeclarePassive("still", false, false, false, false, nil); err != nil {
		t.Fatalf("another connection suffered: %v", err)
	}
}
