package mqtt

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

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

// Devices that each wait for a publish's PUBACK before the next, all at
// once, race to send the queued PUBACKs (acker.now): the one that finds
// another sending leaves its PUBACK to it, and none is lost.
func TestPubacksOfRacingDevices(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	const devices, each = 16, 300
	type device struct {
		rc   *rawClient
		pubs [][]byte // encoded on the test's goroutine: encodeRaw may fail the test
	}
	ds := make([]device, devices)
	for i := range ds {
		ds[i].rc = dialRaw(t, f.addr, 4)
		ds[i].rc.connect(fmt.Sprintf("racer-%d", i))
		for j := range each {
			var b bytes.Buffer
			encodeRaw(t, &b, publishPacket(fmt.Sprintf("race/%d", i), 1, uint16(j+1), []byte("x")), 4)
			ds[i].pubs = append(ds[i].pubs, b.Bytes())
		}
	}
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j, pub := range d.pubs {
				if _, err := d.rc.c.Write(pub); err != nil {
					t.Errorf("device %d, publish %d: %v", i, j+1, err)
					return
				}
				ack, err := d.rc.recv()
				if err != nil || ack.FixedHeader.Type != packets.Puback || ack.PacketID != uint16(j+1) {
					t.Errorf("device %d, publish %d: answered %v (packet type %d, id %d), want its PUBACK", i, j+1, err, ack.FixedHeader.Type, ack.PacketID)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A now that finds another goroutine sending leaves its PUBACK to that
// goroutine, which sends it once it lets go (unlock, as drain does), not
// when some later publish comes.
func TestPubackLeftToTheSender(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	rc := dialRaw(t, f.addr, 4)
	rc.connect("left")
	cl, ok := f.mqtt.mq.Clients.Get("left")
	if !ok {
		t.Fatal("the client is not connected")
	}
	a := f.mqtt.acker
	a.sending.Lock() // another goroutine is sending, past its last look at the queue
	a.queue(cl, 7, 0, time.Now())
	a.now() // must return at once, leaving the PUBACK
	if a.unlock() {
		a.now()
	}
	if ack := rc.expect(packets.Puback); ack.PacketID != 7 {
		t.Fatalf("PUBACK for packet %d, want 7", ack.PacketID)
	}
}
