// Package clusterauth proves that a request to a NameServer comes from a
// broker of the cluster. Every broker and NameServer of a cluster shares one
// secret; a broker signs each REGISTER_BROKER and UNREGISTER_BROKER with an
// HMAC-SHA256 under a key derived from it (HKDF-SHA256, info
// "ferry namesrv registration v1"), and the NameServer checks the signature,
// the timestamp (within Window of its clock) and the nonce (never seen within
// the window). See docs/auth.md, "NameServer trust model".
//
// The signature covers, in this order and length-prefixed so that no two
// requests encode alike: a domain string, the request code, every ext field
// but the signature (sorted by name; the timestamp and the nonce are ext
// fields) and the body. Nothing of a signed request can be changed, added or
// dropped without the NameServer noticing.
package clusterauth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// The ext fields a signed request carries.
const (
	FieldTimestamp = "ferryTimestamp" // Unix milliseconds, decimal
	FieldNonce     = "ferryNonce"     // 16 random bytes, 32 lower-case hex digits
	FieldSignature = "ferrySignature" // HMAC-SHA256, 64 lower-case hex digits
)

const (
	// Window is how far a request's timestamp may be from the verifier's
	// clock, either way.
	Window = 5 * time.Minute
	// MinSecretLen is the shortest secret accepted, in bytes.
	MinSecretLen = 16
	// MaxSecretLen is the longest, in bytes (a secret file is read whole).
	MaxSecretLen = 4096
	// MaxNonces bounds the replay cache: nonces seen within the window.
	// Only requests with a good signature enter it, so only the cluster's
	// own brokers can fill it; when full, requests are refused
	// (ErrReplayCacheFull) until nonces age out.
	MaxNonces = 1 << 18

	nonceLen = 16
	info     = "ferry namesrv registration v1"
	domain   = "ferry cluster signature v1\x00"
)

// Why a request is refused. Verify's errors wrap exactly one of them.
var (
	ErrUnsigned        = errors.New("not signed with the cluster secret")
	ErrMalformed       = errors.New("malformed signature fields")
	ErrBadSignature    = errors.New("bad signature: the sender's cluster secret is not this one")
	ErrStale           = errors.New("timestamp outside the window")
	ErrReplay          = errors.New("nonce already seen: a replayed request")
	ErrReplayCacheFull = errors.New("replay cache full")
)

// Key signs and checks requests. It never holds the secret itself, only
// the key derived from it, and never prints it.
type Key struct {
	k [sha256.Size]byte
}

// NewKey derives the signing key from a shared secret of MinSecretLen to
// MaxSecretLen bytes.
func NewKey(secret []byte) (*Key, error) { return NewKeyFor(secret, info) }

// NewKeyFor derives a key for another use of the secret, named by purpose
// (the HKDF info, "ferry controller v1" say): a signature made for one
// purpose does not verify for another, so a request captured on one port
// cannot be replayed on another.
func NewKeyFor(secret []byte, purpose string) (*Key, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cluster secret: %d bytes, want at least %d", len(secret), MinSecretLen)
	}
	if len(secret) > MaxSecretLen {
		return nil, fmt.Errorf("cluster secret: %d bytes, want at most %d", len(secret), MaxSecretLen)
	}
	dk, err := hkdf.Key(sha256.New, secret, nil, purpose, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	k := &Key{}
	copy(k.k[:], dk)
	return k, nil
}

// GenerateKey makes a key from a random secret: for a NameServer and a
// broker in one process, which need share it with nobody else.
func GenerateKey() (*Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return NewKey(secret)
}

// String hides the key from logs and %v.
func (*Key) String() string { return "clusterauth.Key(redacted)" }

// GoString hides the key from %#v.
func (*Key) GoString() string { return "clusterauth.Key(redacted)" }

// ReadSecretFile reads a secret from path: the whole file, less trailing
// white space (a newline an editor added). groupOrOtherReadable reports
// whether anyone but the owner may read the file (mode bits 0o077), which
// the caller should warn about.
func ReadSecretFile(path string) (secret []byte, groupOrOtherReadable bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("cluster-secret-file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("cluster-secret-file: %w", err)
	}
	if st.Size() > MaxSecretLen+64 {
		return nil, false, fmt.Errorf("cluster-secret-file %s: %d bytes, want at most %d", path, st.Size(), MaxSecretLen)
	}
	buf, err := io.ReadAll(io.LimitReader(f, MaxSecretLen+65))
	if err != nil {
		return nil, false, fmt.Errorf("cluster-secret-file %s: %w", path, err)
	}
	secret = []byte(strings.TrimRight(string(buf), " \t\r\n"))
	if len(secret) < MinSecretLen || len(secret) > MaxSecretLen {
		return nil, false, fmt.Errorf("cluster-secret-file %s: the secret is %d bytes, want %d to %d", path, len(secret), MinSecretLen, MaxSecretLen)
	}
	return secret, st.Mode().Perm()&0o077 != 0, nil
}

// Sign adds a timestamp (now), a fresh nonce and the signature to req's
// ext fields, replacing any there.
func (k *Key) Sign(req *remoting.Command, now time.Time) error {
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("cluster signature: nonce: %w", err)
	}
	req.Del(FieldSignature)
	req.Set(FieldTimestamp, strconv.FormatInt(now.UnixMilli(), 10))
	req.Set(FieldNonce, hex.EncodeToString(nonce[:]))
	req.Set(FieldSignature, hex.EncodeToString(k.mac(req)))
	return nil
}

// mac is the HMAC of req's code, ext fields (but the signature) and body.
func (k *Key) mac(req *remoting.Command) []byte {
	m := hmac.New(sha256.New, k.k[:])
	writeCanonical(m, req)
	return m.Sum(nil)
}

// writeCanonical writes the signed bytes of req to h: the domain, the code
// (u16), the number of ext fields (u32), each as u32 length + name + u32
// length + value sorted by name (each name once, with its last value),
// and the body as u64 length + bytes.
func writeCanonical(h hash.Hash, req *remoting.Command) {
	fields := slices.DeleteFunc(req.SortedFields(), func(f remoting.Field) bool { return f.Name == FieldSignature })
	var b [8]byte
	h.Write([]byte(domain))
	binary.BigEndian.PutUint16(b[:2], uint16(req.Code))
	h.Write(b[:2])
	binary.BigEndian.PutUint32(b[:4], uint32(len(fields)))
	h.Write(b[:4])
	str := func(s string) {
		binary.BigEndian.PutUint32(b[:4], uint32(len(s)))
		h.Write(b[:4])
		h.Write([]byte(s))
	}
	for _, f := range fields {
		str(f.Name)
		str(f.Value)
	}
	binary.BigEndian.PutUint64(b[:], uint64(len(req.Body)))
	h.Write(b[:])
	h.Write(req.Body)
}

// Verifier checks signed requests and remembers their nonces. It is safe
// for concurrent use.
type Verifier struct {
	key    *Key
	window time.Duration
	max    int

	mu        sync.Mutex
	seen      map[string]int64 // nonce → when it may be forgotten (Unix ms)
	lastSweep int64            // Unix ms
}

// NewVerifier checks requests signed with k, within Window, remembering up
// to MaxNonces nonces.
func NewVerifier(k *Key) *Verifier {
	return &Verifier{key: k, window: Window, max: MaxNonces, seen: map[string]int64{}}
}

// Verify reports whether req carries a good signature made within the
// window, with a nonce not seen before (which it then remembers). Its error
// wraps one of the Err… values above and says what was wrong.
func (v *Verifier) Verify(req *remoting.Command, now time.Time) error {
	sig, hasSig := req.Lookup(FieldSignature)
	ts, hasTS := req.Lookup(FieldTimestamp)
	nonce, hasNonce := req.Lookup(FieldNonce)
	if !hasSig && !hasTS && !hasNonce {
		return ErrUnsigned
	}
	if !hasSig || !hasTS || !hasNonce {
		return fmt.Errorf("%w: want all of %s, %s and %s", ErrMalformed, FieldTimestamp, FieldNonce, FieldSignature)
	}
	if len(sig) != 2*sha256.Size || !lowerHex(sig) {
		return fmt.Errorf("%w: %s must be %d lower-case hex digits (got %d characters)", ErrMalformed, FieldSignature, 2*sha256.Size, len(sig))
	}
	if len(nonce) != 2*nonceLen || !lowerHex(nonce) {
		return fmt.Errorf("%w: %s must be %d lower-case hex digits (got %d characters)", ErrMalformed, FieldNonce, 2*nonceLen, len(nonce))
	}
	if len(ts) == 0 || len(ts) > 19 {
		return fmt.Errorf("%w: %s must be 1 to 19 decimal digits (got %d characters)", ErrMalformed, FieldTimestamp, len(ts))
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms < 0 {
		return fmt.Errorf("%w: %s is not Unix milliseconds", ErrMalformed, FieldTimestamp)
	}
	want := v.key.mac(req)
	got := make([]byte, sha256.Size)
	if _, err := hex.Decode(got, []byte(sig)); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, FieldSignature, err)
	}
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	nowMS := now.UnixMilli()
	win := v.window.Milliseconds()
	if off := nowMS - ms; off > win || off < -win {
		return fmt.Errorf("%w: the request was signed %v from this clock, the limit is ±%v (are the clocks in sync?)",
			ErrStale, (time.Duration(off) * time.Millisecond).Round(time.Second), v.window)
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	v.sweep(nowMS)
	if _, dup := v.seen[nonce]; dup {
		return ErrReplay
	}
	if len(v.seen) >= v.max {
		return fmt.Errorf("%w: %d nonces within the last %v (the limit); retry later", ErrReplayCacheFull, len(v.seen), v.window)
	}
	v.seen[nonce] = ms + win // after that, the timestamp is out of the window anyway
	return nil
}

// sweep forgets the nonces whose requests are out of the window; it runs
// at most every window/10 unless the cache is full, and then at most once
// a second.
func (v *Verifier) sweep(nowMS int64) {
	since := nowMS - v.lastSweep
	if since >= 0 && since < v.window.Milliseconds()/10 && (len(v.seen) < v.max || since < 1000) { // a clock set back sweeps at once
		return
	}
	for n, until := range v.seen {
		if until < nowMS {
			delete(v.seen, n)
		}
	}
	v.lastSweep = nowMS
}

// Nonces is how many nonces the verifier remembers now.
func (v *Verifier) Nonces() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seen)
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
