package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ferrymq/ferry/remoting"
)

// Signed requests. A native client proves who it is by signing each
// request with a secret key (RocketMQ ACL 1.0, see remoting.Command.Sign)
// instead of sending its password. The broker cannot check such a
// signature against a bcrypt hash, so each user's line of the password
// file also holds the user's signing key, which ferry passwd derives from
// the password (remoting.SigningKey): Ferry's SDK derives the same key from the
// username and password it is given, and a RocketMQ client is configured
// with it as its SecretKey.

// ErrNoSigningKey is a user whose password file line has no signing key:
// it was written before signing keys existed, and ferry passwd must set the
// password again. The user can still use MQTT.
var ErrNoSigningKey = errors.New("auth: the user has no signing key in the password file (auth.password-file): " +
	"set the password again with ferry passwd FILE USER")

// ErrBadSignature is an unknown access key or a signature that does not
// verify; which of the two is not told.
var ErrBadSignature = errors.New("auth: bad access key or signature")

// checkSigningKey reports why key cannot be a stored signing key.
func checkSigningKey(key string) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(key)
	if err != nil || len(raw) != remoting.SigningKeyLen {
		return fmt.Errorf("signing key %.16q…: want %d bytes in unpadded base64url (ferry passwd writes it)", key, remoting.SigningKeyLen)
	}
	return nil
}

// AuthenticateSigned checks a signed request from user (its access key):
// verify is called with user's signing key and reports whether the
// request's signature is that key's. It is ErrBadSignature for an unknown
// user (verify then runs with a random key, so that the time taken does not
// tell which users exist) or a signature that does not verify, and
// ErrNoSigningKey for a user whose line has no key. An empty user is an
// anonymous client, as for Authenticate; without a password file any user is
// accepted unchecked.
//
// Nothing is cached: a signature covers one request only.
func (a *Authenticator) AuthenticateSigned(user string, verify func(secretKey []byte) bool) error {
	if unchecked, err := a.unchecked(user); unchecked {
		return err
	}
	s := a.state.Load()
	e, ok := s.users[user]
	switch {
	case !ok:
		verify(s.dummyKey)
		return ErrBadSignature
	case e.key == nil:
		return ErrNoSigningKey
	case !verify(e.key):
		return ErrBadSignature
	}
	return nil
}

// newDummyKey is a signing key nobody knows.
func newDummyKey() []byte {
	var b [remoting.SigningKeyLen]byte
	rand.Read(b[:])
	return []byte(base64.RawURLEncoding.EncodeToString(b[:]))
}
