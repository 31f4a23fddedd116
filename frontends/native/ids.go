package native

import (
	"encoding/binary"
	"net"
	"slices"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// propUniqKey is the id a RocketMQ producer gives each message (its msgId).
const propUniqKey = "UNIQ_KEY"

// offsetMsgID is RocketMQ's offsetMsgId of the message at logOffset: the
// broker's store host (the address it registers, storeHost) and the
// commit-log offset, which RocketMQ's clients parse to ask this broker for
// the message (VIEW_MESSAGE_BY_ID). Pulled messages carry the same
// storeHost and offset, so a consumer computes the same id.
func offsetMsgID(storeHost [8]byte, logOffset int64) string {
	var buf [offsetMsgIDLen]byte // on the stack: only the string is made
	return string(appendOffsetMsgID(buf[:0], storeHost, logOffset))
}

// offsetMsgIDLen is the length of an offsetMsgId of this broker's store
// host, an IPv4 address: the hex of the address, the port and the offset.
const offsetMsgIDLen = 2 * (4 + 4 + 8)

// appendOffsetMsgID appends offsetMsgID(storeHost, logOffset) to dst.
func appendOffsetMsgID(dst []byte, storeHost [8]byte, logOffset int64) []byte {
	return remoting.AppendOffsetMsgID(dst, net.IP(storeHost[:4]), int(binary.BigEndian.Uint32(storeHost[4:])), logOffset)
}

// indexUniqKey makes a sent message's UNIQ_KEY one of its keys, so that
// QUERY_MESSAGE finds it by its msgId as RocketMQ's broker does (RocketMQ
// indexes UNIQ_KEY beside KEYS). appendProperties leaves it out of KEYS on
// the way back out.
func indexUniqKey(props core.Properties, keys []string) []string {
	if id := props.Get(propUniqKey); id != "" && !slices.Contains(keys, id) {
		keys = append(keys, id)
	}
	return keys
}
