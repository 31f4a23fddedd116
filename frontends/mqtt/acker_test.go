package mqtt

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The PUBACKs of a burst of QoS 1 publishes are sent once the burst is
// handled, whatever its last packet: another packet type, or the start of
// a packet whose rest has not come.
func TestPubacksAtTheEndOfABurst(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	rc := dialRaw(t, f.addr, 4)
	rc.connect("burst")

	var burst bytes.Buffer
	encode := func(pk packets.Packet) { encodeRaw(t, &burst, pk, 4) }
	// Two publishes and a PINGREQ in one write: the last packet handled is
	// not a publish.
	encode(publishPacket("burst/a", 1, 1, []byte("one")))
	encode(publishPacket("burst/a", 1, 2, []byte("two")))
	encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	rc.write(burst.Bytes())
	got := map[byte]int{}
	for range 3 {
		pk, err := rc.recv()
		if err != nil {
			t.Fatalf("after a burst of two publishes and a PINGREQ, got %v: %v", got, err)
		}
		got[pk.FixedHeader.Type]++
	}
	if got[packets.Puback] != 2 || got[packets.Pingresp] != 1 {
		t.Fatalf("answers to the burst: %v; want 2 PUBACKs and a PINGRESP", got)
	}

	// A burst of more publishes than readIdle sends itself: the acker's
	// goroutine sends them, in order.
	burst.Reset()
	for i := range 3 * inlineAcks {
		encode(publishPacket("burst/a", 1, uint16(100+i), []byte("many")))
	}
	rc.write(burst.Bytes())
	for i := range 3 * inlineAcks {
		if ack := rc.expect(packets.Puback); ack.PacketID != uint16(100+i) {
			t.Fatalf("PUBACK for packet %d, want %d", ack.PacketID, 100+i)
		}
	}

	// A publish followed by the first bytes of the next: its PUBACK does not
	// wait for the rest.
	burst.Reset()
	encode(publishPacket("burst/a", 1, 3, []byte("three")))
	encode(publishPacket("burst/a", 1, 4, []byte("four")))
	cut := burst.Len() - 3
	rc.write(burst.Bytes()[:cut])
	if ack := rc.expect(packets.Puback); ack.PacketID != 3 {
		t.Fatalf("PUBACK for packet %d, want 3", ack.PacketID)
	}
	rc.write(burst.Bytes()[cut:])
	if ack := rc.expect(packets.Puback); ack.PacketID != 4 {
		t.Fatalf("PUBACK for packet %d, want 4", ack.PacketID)
	}
}
