package remoting

import (
	"bytes"
	"io"
	"testing"
)

// TestWriteNowResumes: writeNow, over more segments than one writev takes
// and with empty ones among them, stops where the socket stops taking
// bytes and says where: the rest, written from there, completes the
// bytes of the segments in order.
func TestWriteNowResumes(t *testing.T) {
	cc, sc := tcpPair(t)
	raw := rawConn(cc)
	if raw == nil {
		t.Fatal("a TCP connection has no raw socket")
	}
	var segs [][]byte
	var all []byte
	for i := range 8 * maxIovecs {
		var s []byte
		if i%7 != 0 { // every seventh segment is empty
			s = bytes.Repeat([]byte{byte(i)}, 1+i*37%8000)
		}
		segs = append(segs, s)
		all = append(all, s...)
	}
	var w iovecs
	i, off, err := w.writeNow(raw, segs) // the peer does not read yet: the socket fills
	if err != nil {
		t.Fatal(err)
	}
	if i == len(segs) {
		t.Fatalf("the socket took all %d bytes without the peer reading", len(all))
	}
	if i > len(segs) || off >= len(segs[i]) {
		t.Fatalf("unwritten bytes start at segment %d byte %d, of %d segments", i, off, len(segs))
	}
	written := off
	for _, s := range segs[:i] {
		written += len(s)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(sc, int64(len(all))))
		got <- b
	}()
	if _, err := cc.Write(all[written:]); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, <-got, all, "the bytes read differ from the segments'")
}
