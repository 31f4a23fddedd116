package remoting

import (
	"encoding/base64"

	"golang.org/x/crypto/scrypt"
)

// Signing key derivation (v1): scrypt, so that a stolen password file (which
// stores the key beside a bcrypt hash) does not make guessing passwords any
// cheaper than the hash does. The key is the client's secret of Sign.
const (
	signingKeyDomain = "ferry signing key v1\x00"
	scryptN          = 1 << 15 // 32 MiB, about 0.1 s: once per client, never on the broker
	scryptR          = 8
	scryptP          = 1
	SigningKeyLen    = 32 // bytes of a signing key, before base64
)

// SigningKey derives user's signing key from password:
// base64url(scrypt(password, salt="ferry signing key v1\x00"+user,
// N=32768, r=8, p=1, 32 bytes)), 43 characters without padding. Its text is
// the HMAC key of the signatures (a RocketMQ client's SecretKey). It is
// the same wherever it is derived: ferry passwd stores it, Ferry's SDK
// derives it from WithCredentials.
func SigningKey(user, password string) string {
	k, err := scrypt.Key([]byte(password), []byte(signingKeyDomain+user), scryptN, scryptR, scryptP, SigningKeyLen)
	if err != nil {
		panic("remoting: scrypt: " + err.Error()) // only for bad parameters, which are constants
	}
	return base64.RawURLEncoding.EncodeToString(k)
}
