package native

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/remoting"
)

// firstOffsetMsgID is the offsetMsgId RocketMQ's clients compute for the
// first message of a stored-message body: store host (IPv4 and port) and
// commit-log offset, in upper-case hex.
func firstOffsetMsgID(b []byte) string {
	id := append([]byte(nil), b[64:72]...) // store host
	id = append(id, b[28:36]...)           // commit-log offset
	return strings.ToUpper(hex.EncodeToString(id))
}

// A send answers RocketMQ's offsetMsgId: this broker's address and the
// message's log offset. The message is found there by VIEW_MESSAGE_BY_ID,
// by QUERY_MESSAGE on its UNIQ_KEY (which stays out of KEYS), and a pull
// gives the same id.
func TestSendAnswersOffsetMsgID(t *testing.T) {
	s, c := startServer(t, nil)
	call(t, c, sendV2("ids", "a", []byte("zero"), 0))
	resp := call(t, c, sendV2("ids", "a", []byte("one"), 0))
	id := resp.Ext("msgId")
	addr, off, err := remoting.ParseOffsetMsgID(id)
	if err != nil || addr != s.Addr() || off <= 0 {
		t.Fatalf("msgId %s: %s@%d %v, want this broker's address %s", id, addr, off, err, s.Addr())
	}
	view := call(t, c, remoting.NewRequest(remoting.ViewMessageByID, remoting.Pairs("offset", strconv.FormatInt(off, 10)), nil))
	if msgs := decodeStored(t, view.Body); view.Code != remoting.Success || len(msgs) != 1 || string(msgs[0].body) != "one" ||
		firstOffsetMsgID(view.Body) != id {
		t.Fatalf("view by id %s: %v %+v", id, view, msgs)
	}
	var q *remoting.Command
	waitFor(func() bool { // the key index follows the log: until it has the newest of the two
		q = call(t, c, remoting.NewRequest(remoting.QueryMessage, remoting.Pairs("topic", "ids", "key", "u1", "maxNum", "1"), nil))
		return q.Code != remoting.QueryNotFound && !bytes.Contains(q.Body, []byte("zero"))
	})
	if msgs := decodeStored(t, q.Body); q.Code != remoting.Success || len(msgs) != 1 || string(msgs[0].body) != "one" ||
		msgs[0].props["KEYS"] != "k1 k2" || msgs[0].props["UNIQ_KEY"] != "u1" {
		t.Fatalf("query by UNIQ_KEY: %v %+v", q, msgs)
	}
	pull := call(t, c, remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
		"consumerGroup", "g", "topic", "ids", "queueId", "0", "queueOffset", "1", "maxMsgNums", "1", "sysFlag", "0", "subscription", "*",
	), nil))
	if pull.Code != remoting.Success || firstOffsetMsgID(pull.Body) != id {
		t.Fatalf("pulled: %v, want offsetMsgId %s", pull, id)
	}
	if got := binary.BigEndian.Uint32(pull.Body[68:72]); strconv.Itoa(int(got)) != s.Addr()[strings.LastIndex(s.Addr(), ":")+1:] {
		t.Fatalf("store host port %d, broker at %s", got, s.Addr())
	}
}
