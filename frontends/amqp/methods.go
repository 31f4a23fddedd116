package amqp

import (
	"fmt"
	"time"
)

// Argument kinds of a method's fields (spec §4.2.5).
type kind uint8

const (
	kOctet kind = iota
	kShort
	kLong
	kLonglong
	kShortstr
	kLongstr
	kBit
	kTable
)

// methodID is a method's class and method ids in one number.
type methodID uint32

func mid(class, method uint16) methodID { return methodID(class)<<16 | methodID(method) }

func (m methodID) class() uint16  { return uint16(m >> 16) }
func (m methodID) method() uint16 { return uint16(m) }

// The methods Ferry reads or writes, from the 0-9-1 specification and
// RabbitMQ's extensions (exchange.bind, confirm, basic.nack,
// connection.blocked).
var (
	mConnStart        = mid(10, 10)
	mConnStartOk      = mid(10, 11)
	mConnSecure       = mid(10, 20)
	mConnSecureOk     = mid(10, 21)
	mConnTune         = mid(10, 30)
	mConnTuneOk       = mid(10, 31)
	mConnOpen         = mid(10, 40)
	mConnOpenOk       = mid(10, 41)
	mConnClose        = mid(10, 50)
	mConnCloseOk      = mid(10, 51)
	mConnBlocked      = mid(10, 60)
	mConnUnblocked    = mid(10, 61)
	mConnUpdateSecret = mid(10, 70)

	mChanOpen    = mid(20, 10)
	mChanOpenOk  = mid(20, 11)
	mChanFlow    = mid(20, 20)
	mChanFlowOk  = mid(20, 21)
	mChanClose   = mid(20, 40)
	mChanCloseOk = mid(20, 41)

	mExDeclare   = mid(40, 10)
	mExDeclareOk = mid(40, 11)
	mExDelete    = mid(40, 20)
	mExDeleteOk  = mid(40, 21)
	mExBind      = mid(40, 30)
	mExBindOk    = mid(40, 31)
	mExUnbind    = mid(40, 40)
	mExUnbindOk  = mid(40, 51)

	mQDeclare   = mid(50, 10)
	mQDeclareOk = mid(50, 11)
	mQBind      = mid(50, 20)
	mQBindOk    = mid(50, 21)
	mQPurge     = mid(50, 30)
	mQPurgeOk   = mid(50, 31)
	mQDelete    = mid(50, 40)
	mQDeleteOk  = mid(50, 41)
	mQUnbind    = mid(50, 50)
	mQUnbindOk  = mid(50, 51)

	mBasicQos          = mid(60, 10)
	mBasicQosOk        = mid(60, 11)
	mBasicConsume      = mid(60, 20)
	mBasicConsumeOk    = mid(60, 21)
	mBasicCancel       = mid(60, 30)
	mBasicCancelOk     = mid(60, 31)
	mBasicPublish      = mid(60, 40)
	mBasicReturn       = mid(60, 50)
	mBasicDeliver      = mid(60, 60)
	mBasicGet          = mid(60, 70)
	mBasicGetOk        = mid(60, 71)
	mBasicGetEmpty     = mid(60, 72)
	mBasicAck          = mid(60, 80)
	mBasicReject       = mid(60, 90)
	mBasicRecoverAsync = mid(60, 100)
	mBasicRecover      = mid(60, 110)
	mBasicRecoverOk    = mid(60, 111)
	mBasicNack         = mid(60, 120)

	mConfirmSelect   = mid(85, 10)
	mConfirmSelectOk = mid(85, 11)

	mTxSelect     = mid(90, 10)
	mTxSelectOk   = mid(90, 11)
	mTxCommit     = mid(90, 20)
	mTxCommitOk   = mid(90, 21)
	mTxRollback   = mid(90, 30)
	mTxRollbackOk = mid(90, 31)
)

type methodSpec struct {
	name string
	args []kind
}

// methods is every method's name and fields, in order.
var methods = map[methodID]methodSpec{
	mConnStart:        {"connection.start", []kind{kOctet, kOctet, kTable, kLongstr, kLongstr}},
	mConnStartOk:      {"connection.start-ok", []kind{kTable, kShortstr, kLongstr, kShortstr}},
	mConnSecure:       {"connection.secure", []kind{kLongstr}},
	mConnSecureOk:     {"connection.secure-ok", []kind{kLongstr}},
	mConnTune:         {"connection.tune", []kind{kShort, kLong, kShort}},
	mConnTuneOk:       {"connection.tune-ok", []kind{kShort, kLong, kShort}},
	mConnOpen:         {"connection.open", []kind{kShortstr, kShortstr, kBit}},
	mConnOpenOk:       {"connection.open-ok", []kind{kShortstr}},
	mConnClose:        {"connection.close", []kind{kShort, kShortstr, kShort, kShort}},
	mConnCloseOk:      {"connection.close-ok", nil},
	mConnBlocked:      {"connection.blocked", []kind{kShortstr}},
	mConnUnblocked:    {"connection.unblocked", nil},
	mConnUpdateSecret: {"connection.update-secret", []kind{kLongstr, kShortstr}},

	mChanOpen:    {"channel.open", []kind{kShortstr}},
	mChanOpenOk:  {"channel.open-ok", []kind{kLongstr}},
	mChanFlow:    {"channel.flow", []kind{kBit}},
	mChanFlowOk:  {"channel.flow-ok", []kind{kBit}},
	mChanClose:   {"channel.close", []kind{kShort, kShortstr, kShort, kShort}},
	mChanCloseOk: {"channel.close-ok", nil},

	mExDeclare:   {"exchange.declare", []kind{kShort, kShortstr, kShortstr, kBit, kBit, kBit, kBit, kBit, kTable}},
	mExDeclareOk: {"exchange.declare-ok", nil},
	mExDelete:    {"exchange.delete", []kind{kShort, kShortstr, kBit, kBit}},
	mExDeleteOk:  {"exchange.delete-ok", nil},
	mExBind:      {"exchange.bind", []kind{kShort, kShortstr, kShortstr, kShortstr, kBit, kTable}},
	mExBindOk:    {"exchange.bind-ok", nil},
	mExUnbind:    {"exchange.unbind", []kind{kShort, kShortstr, kShortstr, kShortstr, kBit, kTable}},
	mExUnbindOk:  {"exchange.unbind-ok", nil},

	mQDeclare:   {"queue.declare", []kind{kShort, kShortstr, kBit, kBit, kBit, kBit, kBit, kTable}},
	mQDeclareOk: {"queue.declare-ok", []kind{kShortstr, kLong, kLong}},
	mQBind:      {"queue.bind", []kind{kShort, kShortstr, kShortstr, kShortstr, kBit, kTable}},
	mQBindOk:    {"queue.bind-ok", nil},
	mQPurge:     {"queue.purge", []kind{kShort, kShortstr, kBit}},
	mQPurgeOk:   {"queue.purge-ok", []kind{kLong}},
	mQDelete:    {"queue.delete", []kind{kShort, kShortstr, kBit, kBit, kBit}},
	mQDeleteOk:  {"queue.delete-ok", []kind{kLong}},
	mQUnbind:    {"queue.unbind", []kind{kShort, kShortstr, kShortstr, kShortstr, kTable}},
	mQUnbindOk:  {"queue.unbind-ok", nil},

	mBasicQos:          {"basic.qos", []kind{kLong, kShort, kBit}},
	mBasicQosOk:        {"basic.qos-ok", nil},
	mBasicConsume:      {"basic.consume", []kind{kShort, kShortstr, kShortstr, kBit, kBit, kBit, kBit, kTable}},
	mBasicConsumeOk:    {"basic.consume-ok", []kind{kShortstr}},
	mBasicCancel:       {"basic.cancel", []kind{kShortstr, kBit}},
	mBasicCancelOk:     {"basic.cancel-ok", []kind{kShortstr}},
	mBasicPublish:      {"basic.publish", []kind{kShort, kShortstr, kShortstr, kBit, kBit}},
	mBasicReturn:       {"basic.return", []kind{kShort, kShortstr, kShortstr, kShortstr}},
	mBasicDeliver:      {"basic.deliver", []kind{kShortstr, kLonglong, kBit, kShortstr, kShortstr}},
	mBasicGet:          {"basic.get", []kind{kShort, kShortstr, kBit}},
	mBasicGetOk:        {"basic.get-ok", []kind{kLonglong, kBit, kShortstr, kShortstr, kLong}},
	mBasicGetEmpty:     {"basic.get-empty", []kind{kShortstr}},
	mBasicAck:          {"basic.ack", []kind{kLonglong, kBit}},
	mBasicReject:       {"basic.reject", []kind{kLonglong, kBit}},
	mBasicRecoverAsync: {"basic.recover-async", []kind{kBit}},
	mBasicRecover:      {"basic.recover", []kind{kBit}},
	mBasicRecoverOk:    {"basic.recover-ok", nil},
	mBasicNack:         {"basic.nack", []kind{kLonglong, kBit, kBit}},

	mConfirmSelect:   {"confirm.select", []kind{kBit}},
	mConfirmSelectOk: {"confirm.select-ok", nil},

	mTxSelect:     {"tx.select", nil},
	mTxSelectOk:   {"tx.select-ok", nil},
	mTxCommit:     {"tx.commit", nil},
	mTxCommitOk:   {"tx.commit-ok", nil},
	mTxRollback:   {"tx.rollback", nil},
	mTxRollbackOk: {"tx.rollback-ok", nil},
}

func (m methodID) String() string {
	if s, ok := methods[m]; ok {
		return s.name
	}
	return fmt.Sprintf("method %d.%d", m.class(), m.method())
}

// method is a decoded method frame: its fields in the order of its spec,
// as uint8, uint16, uint32, uint64, string, bool or Table.
type method struct {
	id   methodID
	args []any
}

func (m *method) str(i int) string  { return m.args[i].(string) }
func (m *method) bit(i int) bool    { return m.args[i].(bool) }
func (m *method) u16(i int) uint16  { return m.args[i].(uint16) }
func (m *method) u32(i int) uint32  { return m.args[i].(uint32) }
func (m *method) u64(i int) uint64  { return m.args[i].(uint64) }
func (m *method) table(i int) Table { return m.args[i].(Table) }

// decodeMethod decodes a method frame's payload. An unknown method is a
// connection error 540 NOT_IMPLEMENTED, a malformed one 502 SYNTAX_ERROR.
func decodeMethod(p []byte) (method, error) {
	d := decoder{b: p}
	id := mid(d.short(), d.short())
	if d.err != nil {
		return method{}, connErr(codeSyntaxError, "method frame shorter than its class and method ids")
	}
	spec, ok := methods[id]
	if !ok {
		return method{id: id}, connErr(codeNotImplemented, fmt.Sprintf("%v is not implemented", id))
	}
	m := method{id: id, args: make([]any, len(spec.args))}
	var bits uint8
	nbits := 0
	for i, k := range spec.args {
		if k != kBit {
			nbits = 0
		}
		switch k {
		case kOctet:
			m.args[i] = d.octet()
		case kShort:
			m.args[i] = d.short()
		case kLong:
			m.args[i] = d.long()
		case kLonglong:
			m.args[i] = d.longlong()
		case kShortstr:
			m.args[i] = d.shortstr()
		case kLongstr:
			m.args[i] = d.longstr()
		case kTable:
			t := d.table()
			if t == nil {
				t = Table{}
			}
			m.args[i] = t
		case kBit:
			if nbits%8 == 0 {
				bits = d.octet()
			}
			m.args[i] = bits&(1<<(nbits%8)) != 0
			nbits++
		}
	}
	if d.err != nil {
		return method{id: id}, connErr(codeSyntaxError, fmt.Sprintf("%v: malformed arguments: %v", id, d.err)).on(id)
	}
	return m, nil
}

// appendMethod appends id's payload with args, which must be of its spec's
// kinds (uint8, uint16, uint32, uint64, string, bool, Table).
func appendMethod(dst []byte, id methodID, args ...any) []byte {
	spec := methods[id]
	if len(args) != len(spec.args) {
		panic(fmt.Sprintf("amqp: %v takes %d arguments, given %d", id, len(spec.args), len(args)))
	}
	e := encoder{b: dst}
	e.short(id.class())
	e.short(id.method())
	var bitAt, nbits int
	for i, k := range spec.args {
		if k != kBit {
			nbits = 0
		}
		switch k {
		case kOctet:
			e.octet(args[i].(uint8))
		case kShort:
			e.short(args[i].(uint16))
		case kLong:
			e.long(args[i].(uint32))
		case kLonglong:
			e.longlong(args[i].(uint64))
		case kShortstr:
			e.shortstr(args[i].(string))
		case kLongstr:
			e.longstr(args[i].(string))
		case kTable:
			t, _ := args[i].(Table)
			e.table(t)
		case kBit:
			if nbits%8 == 0 {
				bitAt = len(e.b)
				e.octet(0)
			}
			if args[i].(bool) {
				e.b[bitAt] |= 1 << (nbits % 8)
			}
			nbits++
		}
	}
	return e.b
}

// properties are a content header's basic properties (spec §4.2.6.1,
// class basic), in flag order.
type properties struct {
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string
	MessageID       string
	Timestamp       time.Time
	Type            string
	UserID          string
	AppID           string
	ClusterID       string
}

const (
	flagContentType     = 1 << 15
	flagContentEncoding = 1 << 14
	flagHeaders         = 1 << 13
	flagDeliveryMode    = 1 << 12
	flagPriority        = 1 << 11
	flagCorrelationID   = 1 << 10
	flagReplyTo         = 1 << 9
	flagExpiration      = 1 << 8
	flagMessageID       = 1 << 7
	flagTimestamp       = 1 << 6
	flagType            = 1 << 5
	flagUserID          = 1 << 4
	flagAppID           = 1 << 3
	flagClusterID       = 1 << 2
)

// header is a decoded content header frame.
type header struct {
	class    uint16
	bodySize uint64
	props    properties
	raw      []byte // the property flags and list as sent
}

// decodeHeader decodes a content header frame's payload.
func decodeHeader(p []byte) (header, error) {
	d := decoder{b: p}
	h := header{class: d.short()}
	d.short() // weight, unused
	h.bodySize = d.longlong()
	h.raw = append([]byte(nil), d.b...)
	h.props = decodeProperties(&d)
	if d.err != nil {
		return header{}, connErr(codeFrameError, fmt.Sprintf("malformed content header: %v", d.err))
	}
	return h, nil
}

// decodeProperties reads a property flags word (with continuation words,
// whose bits 0-9-1 does not define) and the properties it says are there.
func decodeProperties(d *decoder) properties {
	flags := d.short()
	for f := flags; f&1 != 0 && d.err == nil; f = d.short() {
	}
	var p properties
	str := func(flag uint16, dst *string) {
		if flags&flag != 0 {
			*dst = d.shortstr()
		}
	}
	str(flagContentType, &p.ContentType)
	str(flagContentEncoding, &p.ContentEncoding)
	if flags&flagHeaders != 0 {
		p.Headers = d.table()
	}
	if flags&flagDeliveryMode != 0 {
		p.DeliveryMode = d.octet()
	}
	if flags&flagPriority != 0 {
		p.Priority = d.octet()
	}
	str(flagCorrelationID, &p.CorrelationID)
	str(flagReplyTo, &p.ReplyTo)
	str(flagExpiration, &p.Expiration)
	str(flagMessageID, &p.MessageID)
	if flags&flagTimestamp != 0 {
		p.Timestamp = time.Unix(int64(d.longlong()), 0).UTC()
	}
	str(flagType, &p.Type)
	str(flagUserID, &p.UserID)
	str(flagAppID, &p.AppID)
	str(flagClusterID, &p.ClusterID)
	return p
}

// appendProperties appends the property flags and list of p.
func appendProperties(dst []byte, p *properties) []byte {
	e := encoder{b: dst}
	at := len(e.b)
	e.short(0)
	var flags uint16
	str := func(flag uint16, s string) {
		if s != "" {
			flags |= flag
			e.shortstr(s)
		}
	}
	str(flagContentType, p.ContentType)
	str(flagContentEncoding, p.ContentEncoding)
	if len(p.Headers) > 0 {
		flags |= flagHeaders
		e.table(p.Headers)
	}
	if p.DeliveryMode != 0 {
		flags |= flagDeliveryMode
		e.octet(p.DeliveryMode)
	}
	if p.Priority != 0 {
		flags |= flagPriority
		e.octet(p.Priority)
	}
	str(flagCorrelationID, p.CorrelationID)
	str(flagReplyTo, p.ReplyTo)
	str(flagExpiration, p.Expiration)
	str(flagMessageID, p.MessageID)
	if !p.Timestamp.IsZero() {
		flags |= flagTimestamp
		e.longlong(uint64(p.Timestamp.Unix()))
	}
	str(flagType, p.Type)
	str(flagUserID, p.UserID)
	str(flagAppID, p.AppID)
	str(flagClusterID, p.ClusterID)
	e.b[at], e.b[at+1] = byte(flags>>8), byte(flags)
	return e.b
}

// appendHeader appends a content header payload of class basic with the
// raw property flags and list props.
func appendHeader(dst []byte, bodySize uint64, props []byte) []byte {
	e := encoder{b: dst}
	e.short(60)
	e.short(0)
	e.longlong(bodySize)
	e.b = append(e.b, props...)
	return e.b
}
