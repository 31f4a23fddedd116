// Package remoting is the wire format of Ferry's native protocol, which is
// RocketMQ's remoting protocol (4.x): every message on a TCP connection is a
// frame
//
//	length  u32  bytes that follow: 4 + header + body
//	type    u8   header serialization: 0 JSON, 1 RocketMQ binary
//	hlen    u24  header bytes
//	header       code, language, version, opaque, flag, remark, extFields
//	body         the rest
//
// all big-endian. A request and its response share the opaque; bit 0 of
// flag marks a response, bit 1 a one-way request. The NameServer, the
// broker's native front-end and the Go SDK all speak it through this package.
package remoting

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
)

// Serialization is how a frame's header is encoded.
type Serialization byte

const (
	JSON     Serialization = 0
	RocketMQ Serialization = 1
)

// Header fields that carry a client's credentials to a broker that checks
// them: RocketMQ's AccessKey (the username), with a Signature (sign.go), or
// Ferry's deprecated Password, which its SDK no longer sends.
const (
	FieldAccessKey = "AccessKey"
	FieldPassword  = "Password"
)

// Flag bits.
const (
	FlagResponse = 1 << 0
	FlagOneway   = 1 << 1
)

// Version is the protocol version Ferry announces (RocketMQ 4.9's).
const Version = 399

// Command is one request or response.
type Command struct {
	Code      int16
	Language  string // "JAVA", "GO", …
	Version   int16
	Opaque    int32
	Flag      int32
	Remark    string
	ExtFields map[string]string
	// Fields are more ext fields, as a list: a request built on a hot path
	// (the SDK's sends) sets these instead of ExtFields, and its binary
	// header is written without a map. A name is in one or the other;
	// Ext finds both, and Sign moves Fields into ExtFields first. Decoded
	// commands have ExtFields only.
	Fields []Field
	Body   []byte

	// Serialization is how the header came (decode) or goes (encode).
	Serialization Serialization

	frame []byte // a large frame's own memory, which Body lies in: see Release
}

// Field is one ext field of Command.Fields.
type Field struct{ Name, Value string }

// IsResponse reports whether c answers a request.
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether c is a request that wants no answer.
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// NewRequest makes a request with code and ext fields.
func NewRequest(code int16, ext map[string]string, body []byte) *Command {
	return &Command{Code: code, Language: "GO", Version: Version, ExtFields: ext, Body: body}
}

// Response makes the response to c with a response code and remark, in the
// same serialization.
func (c *Command) Response(code int16, remark string) *Command {
	return &Command{Code: code, Language: "GO", Version: Version, Opaque: c.Opaque, Flag: FlagResponse,
		Remark: remark, ExtFields: map[string]string{}, Serialization: c.Serialization}
}

// JSONResponse is a successful response to c whose body is v as JSON (or a
// system error if v does not encode).
func (c *Command) JSONResponse(v any) *Command {
	body, err := json.Marshal(v)
	if err != nil {
		return c.Response(SystemError, err.Error())
	}
	resp := c.Response(Success, "")
	resp.Body = body
	return resp
}

// String describes c for logs: code, opaque, flag, remark; not the body.
func (c *Command) String() string {
	kind := "request"
	if c.IsResponse() {
		kind = "response"
	}
	return fmt.Sprintf("%s code=%d opaque=%d flag=%d remark=%q ext=%d body=%d", kind, c.Code, c.Opaque, c.Flag, c.Remark, len(c.ExtFields)+len(c.Fields), len(c.Body))
}

// Ext returns an ext field, "" when absent.
func (c *Command) Ext(name string) string {
	v, _ := c.ext(name)
	return v
}

// ext finds an ext field in ExtFields or Fields.
func (c *Command) ext(name string) (string, bool) {
	if v, ok := c.ExtFields[name]; ok {
		return v, true
	}
	for _, f := range c.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// extMap moves Fields into ExtFields, for signing, which adds to them.
func (c *Command) extMap() map[string]string {
	if len(c.Fields) > 0 {
		c.ExtFields, c.Fields = c.allExt(), nil
	}
	return c.ExtFields
}

// allExt is every ext field, ExtFields and Fields, as one map: ExtFields
// itself when there are no Fields, else a new map (c is not changed, so
// that encoding it races with nothing).
func (c *Command) allExt() map[string]string {
	if len(c.Fields) == 0 {
		return c.ExtFields
	}
	m := make(map[string]string, len(c.ExtFields)+len(c.Fields))
	maps.Copy(m, c.ExtFields)
	for _, f := range c.Fields {
		m[f.Name] = f.Value
	}
	return m
}

// ExtInt parses an integer ext field; a missing one is an error that names it.
func (c *Command) ExtInt(name string) (int64, error) {
	v, ok := c.ext(name)
	if !ok {
		return 0, fmt.Errorf("%w: missing header field %q", ErrMalformed, name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: header field %q = %.32q is not an integer", ErrMalformed, name, v)
	}
	return n, nil
}
