package replication

import (
	"bytes"
	"testing"
)

// The decoders never trust a length: on any input they return an error or
// a value, never panic, and a decoded hello encodes back to its input.

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 9, frameAck, 0, 0, 0, 0, 0, 0, 0, 7})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf []byte
		readFrame(bytes.NewReader(b), &buf, 1024)
		if cap(buf) > 1024 {
			t.Fatalf("allocated %d bytes past the bound", cap(buf))
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	h := hello{version: 1, group: "g", id: 2, segSize: 1 << 20, logID: 9, end: 100, epochs: []Epoch{{1, 0}, {3, 50}}}
	f.Add(h.encode(nil)[5:])
	f.Add(h.encode(func([]byte) []byte { return make([]byte, macLen) })[5:])
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := decodeHello(p)
		if err != nil {
			return
		}
		var sign func([]byte) []byte
		if len(h.mac) > 0 {
			sign = func([]byte) []byte { return h.mac }
		}
		if got := h.encode(sign)[5:]; !bytes.Equal(got, p) {
			t.Fatalf("re-encoded hello differs:\n%x\n%x", got, p)
		}
	})
}

func FuzzDecodeOthers(f *testing.F) {
	f.Add(byte(frameTruncate), truncate{1, 2, 3}.encode()[5:])
	f.Add(byte(frameRefuse), encodeRefuse("no")[5:])
	f.Add(byte(frameAck), encodeAck(5)[5:])
	f.Add(byte(frameChallenge), challenge{1, make([]byte, nonceLen)}.encode()[5:])
	f.Add(byte(frameData), make([]byte, 16))
	f.Fuzz(func(t *testing.T, typ byte, p []byte) {
		switch typ % 5 {
		case 0:
			decodeTruncate(p)
		case 1:
			decodeRefuse(p)
		case 2:
			decodeAck(p)
		case 3:
			decodeChallenge(p)
		case 4:
			decodeData(p)
		}
	})
}
