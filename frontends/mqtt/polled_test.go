package mqtt

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// With the read loops and without them, a client's bursts are answered
// in order when they mix packets handled on a loop (QoS 0 and 1
// publishes, PINGREQ) with packets handed to a worker (QoS 2, SUBSCRIBE),
// and a burst after a hand-off is back on the loop; packets sent with the
// CONNECT are handled too.
func TestReadLoops(t *testing.T) {
	for _, loops := range []int{-1, 0} {
		t.Run(fmt.Sprint(loops), func(t *testing.T) {
			f := startFerry(t, t.TempDir(), Config{ReadLoops: loops})
			if polling := f.mqtt.poller != nil; polling != (loops == 0 && runtime.GOOS == "linux") {
				t.Fatalf("read loops %d: poller %v", loops, polling)
			}
			sub := dialRaw(t, f.addr, 4)
			sub.connect("loops-sub")
			sub.subscribe(1, "loops/#")

			pub := dialRaw(t, f.addr, 4)
			pub.connect("loops-pub")
			var burst bytes.Buffer
			encode := func(pk packets.Packet) { encodeRaw(t, &burst, pk, 4) }
			encode(publishPacket("loops/a", 1, 1, []byte("one")))
			encode(publishPacket("loops/a", 2, 2, []byte("two")))
			encode(publishPacket("loops/a", 1, 3, []byte("three")))
			encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
			pub.write(burst.Bytes())
			// PUBACKs in the order of their PUBLISHes [MQTT-4.6.0-2]; a PUBACK
			// waits for the log's write, a PUBREC does not.
			var got []string
			for range 4 {
				pk, err := pub.recv()
				if err != nil {
					t.Fatalf("answers to the burst: %v, then %v", got, err)
				}
				got = append(got, fmt.Sprint(pk.FixedHeader.Type, ":", pk.PacketID))
			}
			var acks []string
			for _, a := range got {
				if a[0] == '4' { // PUBACK
					acks = append(acks, a)
				}
			}
			if fmt.Sprint(acks) != "[4:1 4:3]" || !slices.Contains(got, "5:2") || !slices.Contains(got, "13:0") {
				t.Fatalf("answers to the burst (type:id): %v; want PUBACK 1 before PUBACK 3, PUBREC 2, PINGRESP", got)
			}
			pub.send(ackPacket(packets.Pubrel, 2))
			pub.expectAck(packets.Pubcomp, 2)
			for _, want := range []string{"one", "two", "three"} {
				if pk := sub.expectPublish("loops/a"); string(pk.Payload) != want {
					t.Fatalf("delivered %q, want %q", pk.Payload, want)
				}
			}

			burst.Reset()
			encode(publishPacket("loops/b", 0, 0, []byte("four")))
			encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
			pub.write(burst.Bytes())
			pub.expect(packets.Pingresp)
			if pk := sub.expectPublish("loops/b"); string(pk.Payload) != "four" {
				t.Fatalf("delivered %q, want four", pk.Payload)
			}

			early := dialRaw(t, f.addr, 4)
			burst.Reset()
			encode(connectPacket("loops-early"))
			encode(publishPacket("loops/c", 1, 7, []byte("five")))
			early.write(burst.Bytes())
			early.expect(packets.Connack)
			early.expectAck(packets.Puback, 7)
			if pk := sub.expectPublish("loops/c"); string(pk.Payload) != "five" {
				t.Fatalf("delivered %q, want five", pk.Payload)
			}
		})
	}
}
