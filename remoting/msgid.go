package remoting

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
)

// RocketMQ's offsetMsgId: the address of the broker that stored a message
// and the message's commit-log offset there, in upper-case hex. An IPv4
// store host makes 16 bytes (IPv4, port as a big-endian int32, offset as a
// big-endian int64): 32 characters, the form RocketMQ's clients parse; an
// IPv6 one makes 28 bytes: 56 characters.
const (
	offsetMsgIDLen   = 2 * (4 + 4 + 8)
	offsetMsgIDLenV6 = 2 * (16 + 4 + 8)
)

// FormatOffsetMsgID is the offsetMsgId of the message at logOffset in the
// log of the broker whose store host is ip:port.
func FormatOffsetMsgID(ip net.IP, port int, logOffset int64) string {
	var buf [offsetMsgIDLenV6]byte // on the stack: only the string is made
	return string(AppendOffsetMsgID(buf[:0], ip, port, logOffset))
}

// AppendOffsetMsgID appends FormatOffsetMsgID's id to dst: for an answer
// that keeps its strings in one buffer of its own.
func AppendOffsetMsgID(dst []byte, ip net.IP, port int, logOffset int64) []byte {
	var buf [16 + 4 + 8]byte
	b := buf[:0]
	if ip4 := ip.To4(); ip4 != nil {
		b = append(b, ip4...)
	} else {
		b = append(b, ip.To16()...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(port))
	b = binary.BigEndian.AppendUint64(b, uint64(logOffset))
	const upperHex = "0123456789ABCDEF"
	for _, v := range b {
		dst = append(dst, upperHex[v>>4], upperHex[v&0xf])
	}
	return dst
}

// ParseOffsetMsgID splits an offsetMsgId into the address of the broker
// that stored the message (host:port, the address to ask with
// VIEW_MESSAGE_BY_ID) and its commit-log offset there.
func ParseOffsetMsgID(id string) (addr string, logOffset int64, err error) {
	if len(id) != offsetMsgIDLen && len(id) != offsetMsgIDLenV6 {
		return "", 0, fmt.Errorf("remoting: message id %q: want %d hex characters (IPv4 store host) or %d (IPv6), not %d",
			id, offsetMsgIDLen, offsetMsgIDLenV6, len(id))
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return "", 0, fmt.Errorf("remoting: message id %q: %w", id, err)
	}
	ipLen := len(b) - 12
	port := binary.BigEndian.Uint32(b[ipLen:])
	if port == 0 || port > 65535 {
		return "", 0, fmt.Errorf("remoting: message id %q: port %d out of range", id, port)
	}
	logOffset = int64(binary.BigEndian.Uint64(b[ipLen+4:]))
	if logOffset < 0 {
		return "", 0, fmt.Errorf("remoting: message id %q: negative commit-log offset", id)
	}
	return net.JoinHostPort(net.IP(b[:ipLen]).String(), strconv.Itoa(int(port))), logOffset, nil
}
