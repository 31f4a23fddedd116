package remoting

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// Header fields of a signed request (RocketMQ ACL 1.0). The client puts its
// access key (a Ferry username) in FieldAccessKey and the signature in
// FieldSignature; the secret key never travels.
const (
	FieldSignature     = "Signature"
	FieldSecurityToken = "SecurityToken"
	// FieldSignedAt is when Ferry's SDK signed the request, in Unix
	// milliseconds. It is covered by the signature, so a broker can refuse
	// a replay of an old request; RocketMQ's clients do not send it.
	FieldSignedAt = "FerrySignedAt"
	// fieldUniqueKeyQuery is a flag RocketMQ's Java client adds after it
	// signed a query: its broker leaves it out of the content, and so do we.
	fieldUniqueKeyQuery = "_UNIQUE_KEY_QUERY"
)

// MaxSignatureLen bounds the Signature field a broker looks at: a base64
// HMAC-SHA1 is 28 characters.
const MaxSignatureLen = 64

// signed reports whether a signature covers the ext field name: every
// field does except the signature itself and _UNIQUE_KEY_QUERY.
func signed(name string) bool { return name != FieldSignature && name != fieldUniqueKeyQuery }

// content is what a signature covers but the body: the values of the
// signed ext fields (each name once, its last value) in name order
// (bytewise), without separators, in one slice (a hash write per field
// costs a copy each).
func content(fields []Field) []byte {
	var arr [24]Field // a send's fields sort here, not on the heap
	sorted := appendSorted(arr[:0], fields)
	n := 0
	for _, f := range sorted {
		if signed(f.Name) {
			n += len(f.Value)
		}
	}
	out := make([]byte, 0, n)
	for _, f := range sorted {
		if signed(f.Name) {
			out = append(out, f.Value...)
		}
	}
	return out
}

// SignedContent is what a signature of a request with these ext fields and
// body covers (RocketMQ ACL 1.0): the values of every ext field except
// Signature and _UNIQUE_KEY_QUERY, in the order of their names, without
// separators, followed by the body.
func SignedContent(fields []Field, body []byte) []byte {
	return append(content(fields), body...)
}

// signature is base64(HMAC-SHA1(secretKey, content of c)).
func signature(c *Command, secretKey []byte) []byte {
	m := hmac.New(sha1.New, secretKey)
	m.Write(content(c.Fields))
	m.Write(c.Body)
	var sum [sha1.Size]byte
	raw := m.Sum(sum[:0])
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	base64.StdEncoding.Encode(out, raw)
	return out
}

// Sign signs c as RocketMQ's clients do (ACL 1.0) for accessKey with
// secretKey: it sets AccessKey, and Signature to
// base64(HMAC-SHA1(secretKey, SignedContent)). A Password field is removed:
// a signed request never carries one. With at not zero it also sets
// FerrySignedAt (covered by the signature) to at in Unix milliseconds. c's
// ext fields and body must not change afterwards.
func (c *Command) Sign(accessKey string, secretKey []byte, at time.Time) {
	c.Del(FieldPassword)
	c.Del(FieldSignature)
	c.Set(FieldAccessKey, accessKey)
	if !at.IsZero() {
		c.Set(FieldSignedAt, strconv.FormatInt(at.UnixMilli(), 10))
	}
	c.Fields = append(c.Fields, Field{FieldSignature, string(signature(c, secretKey))})
}

// Signed reports whether c carries a signature.
func (c *Command) Signed() bool { return c.Ext(FieldSignature) != "" }

// VerifySignature reports whether c's Signature is the one secretKey makes
// of c's content, comparing in constant time. A missing signature, or one
// longer than MaxSignatureLen, does not verify.
func (c *Command) VerifySignature(secretKey []byte) bool {
	got := c.Ext(FieldSignature)
	if got == "" || len(got) > MaxSignatureLen {
		return false
	}
	return hmac.Equal(signature(c, secretKey), []byte(got))
}

// SignedAt returns the time FerrySignedAt holds; ok is false when c has no
// such field, and err names a value that is not Unix milliseconds.
func (c *Command) SignedAt() (at time.Time, ok bool, err error) {
	v, ok := c.Lookup(FieldSignedAt)
	if !ok {
		return time.Time{}, false, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, true, fmt.Errorf("%w: header field %q = %.32q is not Unix milliseconds", ErrMalformed, FieldSignedAt, v)
	}
	return time.UnixMilli(ms), true, nil
}
