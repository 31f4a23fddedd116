package mqtt

import (
	"strings"
	"unicode/utf8"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxReason bounds a reason string Ferry sends: enough to name the limit or
// rule that refused a packet, short enough for a client to log.
const maxReason = 120

// reservedTopic is the reason a PUBLISH or a will on a topic starting with
// '$' is refused: such topics are the server's [MQTT-4.7.2], and filters
// starting with a wildcard never match them [MQTT-4.7.2-1].
const reservedTopic = "topic names starting with '$' are reserved to the server"

// cleanReason makes s fit to be an MQTT reason string: valid UTF-8
// [MQTT-1.5.4-1], without control characters, at most maxReason bytes cut
// at a character boundary.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 { // [MQTT-1.5.4-2] and what clients may refuse
			return '?'
		}
		return r
	}, s)
	return cutUTF8(s, maxReason)
}

// cutUTF8 returns s cut to at most n bytes at a character boundary, so
// that valid UTF-8 stays valid.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ackSize is the size of an MQTT 5 PUBACK or PUBREC carrying a reason code
// and a reason string of n bytes: fixed header, packet id, reason code,
// property length, then the property (identifier, length, string).
func ackSize(n int) int {
	props := 0
	if n > 0 {
		props = 1 + 2 + n
	}
	remaining := 2 + 1 + varintLen(props) + props
	return 1 + varintLen(remaining) + remaining
}

func varintLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

// writeAck answers a QoS 1 or 2 PUBLISH (PUBACK or PUBREC) with code. The
// reason string goes along under MQTT 5 only when the whole packet fits the
// client's Maximum Packet Size [MQTT-3.4.2-3] [MQTT-3.5.2-3] and the client
// did not turn problem information off [MQTT-3.1.2-29]: without it the
// reason code alone still says why. A QoS 0 PUBLISH has no answer.
func writeAck(cl *mochi.Client, pk packets.Packet, code byte, reason string) {
	var typ byte
	switch pk.FixedHeader.Qos {
	case 1:
		typ = packets.Puback
	case 2:
		typ = packets.Pubrec
	default:
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pk.PacketID}
	if cl.Properties.ProtocolVersion == 5 {
		ack.ReasonCode = code
		reason = cleanReason(reason)
		props := cl.Properties.Props
		if max := props.MaximumPacketSize; max > 0 && uint32(ackSize(len(reason))) > max ||
			props.RequestProblemInfoFlag && props.RequestProblemInfo == 0 {
			reason = ""
		}
		ack.Properties.ReasonString = reason
		ack.Mods.MaxSize = uint32(ackSize(len(reason))) + 1 // checked above: the codec's own check counts less
	}
	_ = cl.WritePacket(ack)
}

// refuseReserved answers a client's PUBLISH to a topic starting with '$'.
// MQTT 5: PUBACK or PUBREC 0x90 (topic name invalid) with a short reason.
// MQTT 3.1.1 has no negative acknowledgement; of the two answers it allows
// [MQTT-3.3.5-2], Ferry acknowledges as the QoS asks and drops the message
// rather than closing the connection, which the client would reopen to send
// the same message again, forever. Nothing is stored or delivered either
// way. The engine is handed the packet under a $SYS topic, which it drops
// unanswered (a QoS 2 PUBREL that follows is answered with PUBCOMP).
func (h *hook) refuseReserved(cl *mochi.Client, pk packets.Packet) packets.Packet {
	h.s.countRefusal(causeReserved)
	h.s.log.Info("mqtt: publish to a reserved topic refused", "client", cl.ID, "topic", clip(pk.TopicName),
		"qos", pk.FixedHeader.Qos, "version", cl.Properties.ProtocolVersion)
	writeAck(cl, pk, packets.ErrTopicNameInvalid.Code, reservedTopic)
	pk.TopicName = "$SYS/ferry/refused"
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	return pk
}
