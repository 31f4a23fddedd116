package native

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

func halfSend(topic, uniq string) *remoting.Command {
	props := string(remoting.EncodeProperties(map[string]string{"TAGS": "t", "UNIQ_KEY": uniq, "PGROUP": "pg", "TRAN_MSG": "true"}))
	return remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs(
		"a", "pg", "b", topic, "e", "0", "f", strconv.Itoa(txPrepared), "g", "1700000000000", "h", "0", "i", props, "j", "0",
	), []byte("body of "+uniq))
}

func endTx(group string, commitLogOffset int64, uniq string, how int, fromCheck bool) *remoting.Command {
	return remoting.NewRequest(remoting.EndTransaction, remoting.Pairs(
		"producerGroup", group, "tranStateTableOffset", "0", "commitLogOffset", strconv.FormatInt(commitLogOffset, 10),
		"commitOrRollback", strconv.Itoa(how), "fromTransactionCheck", strconv.FormatBool(fromCheck), "msgId", uniq, "transactionId", uniq,
	), nil)
}

func pullQueue0(t *testing.T, c *remoting.Client, topic string) *remoting.Command {
	return call(t, c, remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
		"consumerGroup", "g", "topic", topic, "queueId", "0", "queueOffset", "0",
		"maxMsgNums", "32", "sysFlag", "0", "subscription", "*", "suspendTimeoutMillis", "0",
	), nil))
}

func TestTransactionOverTheWire(t *testing.T) {
	_, c := startServerWith(t, core.Config{AutoCreateTopics: true,
		TransactionCheckDelay: 50 * time.Millisecond, TransactionCheckInterval: 50 * time.Millisecond}, nil)

	// The handler runs on the client's reader: it must not block, or the
	// checks that come every 50 ms would stall the test's own calls once
	// the channel is full. Checks past the first few are dropped.
	checks := make(chan *remoting.Command, 8)
	c.HandleRequests(func(req *remoting.Command) *remoting.Command {
		if req.Code == remoting.CheckTransactionState {
			select {
			case checks <- req:
			default:
			}
		}
		return nil
	})
	hb, _ := json.Marshal(map[string]any{"clientID": "p1", "producerDataSet": []map[string]string{{"groupName": "pg"}}})
	if resp := call(t, c, remoting.NewRequest(remoting.HeartBeat, nil, hb)); resp.Code != remoting.Success {
		t.Fatalf("heartbeat: %v", resp.Remark)
	}

	// Rolled back: never visible.
	resp := call(t, c, halfSend("tx", "u-rollback"))
	if resp.Code != remoting.Success || resp.Ext("transactionId") != "u-rollback" {
		t.Fatalf("half send: %d %s %v", resp.Code, resp.Remark, resp.Fields)
	}
	if r := call(t, c, endTx("pg", -1, "u-rollback", txRollback, false)); r.Code != remoting.Success {
		t.Fatalf("rollback: %s", r.Remark)
	}
	if r := pullQueue0(t, c, "tx"); r.Code != remoting.PullNotFound {
		t.Fatalf("pull after a rollback: code %d", r.Code)
	}

	// Unknown at first; the check's answer commits it.
	resp = call(t, c, halfSend("tx", "u-check"))
	if resp.Code != remoting.Success {
		t.Fatalf("half send: %s", resp.Remark)
	}
	var chk *remoting.Command
	select {
	case chk = <-checks:
	case <-time.After(10 * time.Second):
		t.Fatal("no CHECK_TRANSACTION_STATE came")
	}
	if chk.Ext("msgId") != "u-check" || chk.Ext("offsetMsgId") != resp.Ext("msgId") || !chk.IsOneway() {
		t.Fatalf("check header: %v (send answered %v)", chk.Fields, resp.Fields)
	}
	if r := pullQueue0(t, c, "tx"); r.Code != remoting.PullNotFound {
		t.Fatalf("visible before its commit: code %d", r.Code)
	}
	off, _ := chk.ExtInt("commitLogOffset")
	view := func() string {
		r := call(t, c, remoting.NewRequest(remoting.ViewMessageByID, remoting.Pairs("offset", strconv.FormatInt(off, 10)), nil))
		if r.Code != remoting.Success {
			t.Fatalf("view the half message: %s", r.Remark)
		}
		return decodeStored(t, r.Body)[0].props[propTranState]
	}
	// The broker counts a check once it has asked: the count may lag the
	// check's arrival by a moment (and the next check may come meanwhile).
	checked := regexp.MustCompile(`^pending: [1-9][0-9]* checks made`)
	var st string
	if !waitFor(func() bool { st = view(); return checked.MatchString(st) }) {
		t.Fatalf("a half message's state once checked: %q", st)
	}
	if err := c.InvokeOneway(endTx("pg", off, "u-check", txCommit, true)); err != nil {
		t.Fatal(err)
	}
	var r *remoting.Command
	if !waitFor(func() bool { r = pullQueue0(t, c, "tx"); return r.Code == remoting.Success }) {
		t.Fatal("the committed message never came")
	}
	if n := len(decodeStored(t, r.Body)); n != 1 {
		t.Fatalf("%d messages after the commit, want 1", n)
	}
	if st := view(); st != "resolved" {
		t.Fatalf("a committed half message's state: %q", st)
	}
}
