package mqtt

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestBatchConnGathersUntilTheReaderWaits(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &batchConn{Conn: a}
	defer c.Close()
	got := make(chan []byte, 10)
	go func() {
		buf := make([]byte, 100)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	c.Write([]byte("ack1"))
	c.Write([]byte("ack2"))
	select {
	case p := <-got:
		t.Fatalf("%q written while the reader was busy", p)
	case <-time.After(20 * time.Millisecond):
	}
	readDone := make(chan struct{})
	go func() { // the reader blocks for input: what is gathered goes out first
		defer close(readDone)
		io.ReadFull(c, make([]byte, 1))
	}()
	if p := <-got; string(p) != "ack1ack2" {
		t.Fatalf("got %q, want the two acks in one write", p)
	}
	for blocked := false; !blocked; { // wait for the reader to block in Read
		c.mu.Lock()
		blocked = c.reading
		c.mu.Unlock()
		runtime.Gosched()
	}
	c.Write([]byte("retained"))
	select {
	case p := <-got:
		if string(p) != "retained" {
			t.Fatalf("got %q", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a write made while the reader was blocked was held back")
	}
	b.Write([]byte("x"))
	<-readDone
}
