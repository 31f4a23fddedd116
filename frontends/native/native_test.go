package native

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
	"github.com/ferrymq/ferry/remoting"
)

func start(t *testing.T) (*core.Broker, *remoting.Client) {
	t.Helper()
	s, c := startServer(t, nil)
	return s.b, c
}

// startServer serves a new broker on a free port and dials it, and
// returns once Serve has set its Addr; a, when not nil, checks the
// requests.
func startServer(t *testing.T, a *auth.Authenticator) (*Server, *remoting.Client) {
	t.Helper()
	return startServerWith(t, core.Config{AutoCreateTopics: true}, a)
}

// startServerWith is startServer over a core configured by cfg (quiet
// when cfg has no Logger).
func startServerWith(t *testing.T, cfg core.Config, a *auth.Authenticator) (*Server, *remoting.Client) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger := cfg.Logger
	b := coretest.New(t, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(b, Options{Auth: a, Logger: logger})
	go s.Serve(ln)
	c, err := remoting.Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		s.Close()
		b.Close()
	})
	if !waitFor(func() bool { return s.Addr() != "" }) { // Serve sets it as it starts
		t.Fatal("Serve never set the address")
	}
	return s, c
}

// waitFor polls cond until it holds, for up to 10 s; false when it never
// did. The caller says what did not happen.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func call(t *testing.T, c *remoting.Client, req *remoting.Command) *remoting.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func sendV2(topic, tag string, body []byte, sysFlag int) *remoting.Command {
	props := string(remoting.EncodeProperties(map[string]string{"TAGS": tag, "KEYS": "k1 k2", "UNIQ_KEY": "u1"}))
	return remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs(
		"a", "pg", "b", topic, "e", "0", "f", strconv.Itoa(sysFlag), "g", "1700000000000", "h", "0", "i", props, "j", "0",
	), body)
}

func TestSendAndLongPollPull(t *testing.T) {
	_, c := start(t)
	pull := func(offset int64, sub string, wait time.Duration) *remoting.Command {
		return call(t, c, remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
			"consumerGroup", "g", "topic", "t", "queueId", "0", "queueOffset", strconv.FormatInt(offset, 10),
			"maxMsgNums", "32", "sysFlag", "0", "subscription", sub, "suspendTimeoutMillis", strconv.Itoa(int(wait/time.Millisecond)),
		), nil))
	}
	// A pull on an empty queue waits, and a send wakes it.
	got := make(chan *remoting.Command, 1)
	go func() { got <- pull(0, "*", 10*time.Second) }()
	select { // the pull waits rather than answering "not found" at once
	case resp := <-got:
		t.Fatalf("a pull on an empty queue answered at once: %v", resp)
	case <-time.After(50 * time.Millisecond):
	}
	if resp := call(t, c, sendV2("t", "a", []byte("one"), 0)); resp.Code != remoting.Success || resp.Ext("queueOffset") != "0" {
		t.Fatalf("send: %v", resp)
	}
	var zbody bytes.Buffer
	zw := zlib.NewWriter(&zbody)
	zw.Write([]byte("two, compressed"))
	zw.Close()
	call(t, c, sendV2("t", "b", zbody.Bytes(), sysCompressed))
	resp := <-got
	if resp.Code != remoting.Success || len(resp.Body) == 0 {
		t.Fatalf("long-polled pull: %v", resp)
	}
	// The index follows the log: wait until it holds both sends.
	deadline := time.Now().Add(5 * time.Second)
	for call(t, c, remoting.NewRequest(remoting.GetMaxOffset, remoting.Pairs("topic", "t", "queueId", "0"), nil)).Ext("offset") != "2" {
		if time.Now().After(deadline) {
			t.Fatal("the second send was never indexed")
		}
		time.Sleep(time.Millisecond)
	}
	// The body decodes as RocketMQ's stored-message layout.
	resp = pull(0, "*", 0)
	msgs := decodeStored(t, resp.Body)
	if len(msgs) != 2 || string(msgs[0].body) != "one" || string(msgs[1].body) != "two, compressed" ||
		msgs[0].topic != "t" || msgs[0].props["TAGS"] != "a" || msgs[0].props["KEYS"] != "k1 k2" || msgs[0].props["UNIQ_KEY"] != "u1" {
		t.Fatalf("pulled %+v", msgs)
	}
	if resp.Ext("nextBeginOffset") != "2" || resp.Ext("maxOffset") != "2" {
		t.Fatalf("offsets %v", resp.Fields)
	}
	// A tag filter.
	if msgs := decodeStored(t, pull(0, "b", 0).Body); len(msgs) != 1 || string(msgs[0].body) != "two, compressed" {
		t.Fatalf("filtered pull %+v", msgs)
	}
	// Past the end: offset moved, with where to go.
	if resp := pull(9, "*", 0); resp.Code != remoting.PullOffsetMoved || resp.Ext("nextBeginOffset") != "2" {
		t.Fatalf("pull past the end: %v", resp)
	}
	// Nothing new: not found after the wait.
	if resp := pull(2, "*", 50*time.Millisecond); resp.Code != remoting.PullNotFound {
		t.Fatalf("pull at the end: %v", resp)
	}
	// An offset just past the indexed end waits for it rather than moving
	// the consumer: a send acknowledged can be a moment ahead of the index.
	ahead := make(chan *remoting.Command, 1)
	go func() { ahead <- pull(3, "*", 10*time.Second) }()
	call(t, c, sendV2("t", "c", []byte("three"), 0))
	call(t, c, sendV2("t", "d", []byte("four"), 0))
	if resp := <-ahead; resp.Code != remoting.Success || len(decodeStored(t, resp.Body)) != 1 || resp.Ext("nextBeginOffset") != "4" {
		t.Fatalf("pull of an offset about to be indexed: code %d %v", resp.Code, resp.Fields)
	}
}

func TestOffsetsHeartbeatAndBadInput(t *testing.T) {
	_, c := start(t)
	q := remoting.Pairs("consumerGroup", "g", "topic", "t", "queueId", "1")
	if err := remoting.ResponseError(call(t, c, remoting.NewRequest(remoting.QueryConsumerOffset, q, nil))); !errors.Is(err, remoting.ErrQueryNotFound) {
		t.Fatalf("offset before any commit: %v", err)
	}
	u := remoting.Pairs("consumerGroup", "g", "topic", "t", "queueId", "1", "commitOffset", "42")
	call(t, c, remoting.NewRequest(remoting.UpdateConsumerOffset, u, nil))
	if resp := call(t, c, remoting.NewRequest(remoting.QueryConsumerOffset, q, nil)); resp.Ext("offset") != "42" {
		t.Fatalf("committed offset: %v", resp)
	}
	hb := `{"clientID":"c1","consumerDataSet":[{"groupName":"g","subscriptionDataSet":[{"topic":"t"}]}]}`
	call(t, c, remoting.NewRequest(remoting.HeartBeat, nil, []byte(hb)))
	if resp := call(t, c, remoting.NewRequest(remoting.GetConsumerListByGroup, remoting.Pairs("consumerGroup", "g"), nil)); string(resp.Body) != `{"consumerIdList":["c1"]}` {
		t.Fatalf("consumer list %s", resp.Body)
	}
	for name, req := range map[string]*remoting.Command{
		"bad topic":      sendV2("a/b", "x", []byte("x"), 0),
		"bad compressed": sendV2("t", "x", []byte("not zlib"), sysCompressed),
		"bad batch":      remoting.NewRequest(remoting.SendBatchMessage, remoting.Pairs("b", "t"), []byte{0, 0, 0, 99}),
	} {
		if err := remoting.ResponseError(call(t, c, req)); !errors.Is(err, remoting.ErrMessageIllegal) {
			t.Errorf("%s: %v, want message illegal", name, err)
		}
	}
	if err := remoting.ResponseError(call(t, c, remoting.NewRequest(999, nil, nil))); !errors.Is(err, remoting.ErrNotSupported) {
		t.Fatalf("unknown code: %v", err)
	}
}

type stored struct {
	topic string
	body  []byte
	props map[string]string
}

// decodeStored decodes RocketMQ's stored-message layout, as its clients do.
func decodeStored(t *testing.T, b []byte) []stored {
	t.Helper()
	var out []stored
	be := binary.BigEndian
	for len(b) > 0 {
		size := int(be.Uint32(b))
		m := b[:size]
		b = b[size:]
		p := 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8
		blen := int(be.Uint32(m[p:]))
		body := m[p+4 : p+4+blen]
		p += 4 + blen
		tlen := int(m[p])
		topic := string(m[p+1 : p+1+tlen])
		p += 1 + tlen
		plen := int(be.Uint16(m[p:]))
		props := remoting.DecodeProperties(string(m[p+2 : p+2+plen]))
		if p+2+plen != size {
			t.Fatalf("message of %d bytes, fields end at %d", size, p+2+plen)
		}
		out = append(out, stored{topic, body, props})
	}
	return out
}

// FuzzDecodeBatch: any body must decode or fail cleanly.
func FuzzDecodeBatch(f *testing.F) {
	one := func(body, props string) []byte {
		var m []byte
		be := binary.BigEndian
		size := 20 + len(body) + 2 + len(props)
		m = be.AppendUint32(m, uint32(size))
		m = be.AppendUint32(m, 0)
		m = be.AppendUint32(m, 0)
		m = be.AppendUint32(m, 0)
		m = be.AppendUint32(m, uint32(len(body)))
		m = append(m, body...)
		m = be.AppendUint16(m, uint16(len(props)))
		return append(m, props...)
	}
	f.Add(append(one("a", "TAGS\x01x\x02"), one("bb", "")...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeBatch("t", b)
		if err == nil && len(b) > 0 && len(msgs) == 0 {
			t.Fatal("a non-empty batch decoded to nothing")
		}
	})
}
