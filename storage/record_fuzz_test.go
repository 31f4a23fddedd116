package storage

import "testing"

// FuzzRecord feeds arbitrary bytes to the record framer and decoder: they
// must never panic or read out of bounds, and a record they accept must
// encode back to a record that decodes to the same message.
func FuzzRecord(f *testing.F) {
	for i := 0; i < 8; i++ {
		m := genMessage(i, 2, 2, 200)
		m.LogOffset, m.QueueOffset = int64(i*1000), int64(i)
		size, err := m.encodedSize(1 << 20)
		if err != nil {
			f.Fatal(err)
		}
		b := make([]byte, size)
		m.encode(b)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, headerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, size, _ := frame(b, len(b), maxRecordSize(1<<20))
		if kind != frameRecord {
			// Unframed bytes still must not crash the decoder.
			var m Message
			_ = decodeRecord(append([]byte(nil), b...), &m, nil)
			return
		}
		if size < minRecordSize || size > len(b) {
			t.Fatalf("frame accepted a size of %d for %d bytes", size, len(b))
		}
		var m Message
		if err := decodeRecord(append([]byte(nil), b[:size]...), &m, nil); err != nil {
			return
		}
		n, err := m.encodedSize(1 << 30)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		again := make([]byte, n)
		m.encode(again)
		var m2 Message
		if err := decodeRecord(again, &m2, nil); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if err := sameMessage(&m2, &m); err != nil || m2.QueueOffset != m.QueueOffset || m2.LogOffset != m.LogOffset ||
			m2.StoreTime != m.StoreTime || m2.DeliverAt != m.DeliverAt || m2.ReconsumeTimes != m.ReconsumeTimes {
			t.Fatalf("round trip changed the message: %v", err)
		}
	})
}
