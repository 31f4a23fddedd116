package clusterauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// replicationDomain separates the replication handshake's MACs from every
// other use of the key.
const replicationDomain = "ferry replication handshake v1\x00"

// ReplicationMAC is the HMAC-SHA256 a replica's handshake carries: over a
// domain string, the master's fresh challenge nonce and the handshake's
// other bytes, so that a recorded handshake proves nothing to another
// connection (docs/replication.md).
func (k *Key) ReplicationMAC(nonce, hello []byte) []byte {
	m := hmac.New(sha256.New, k.k[:])
	m.Write([]byte(replicationDomain))
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(len(nonce)))
	m.Write(b[:])
	m.Write(nonce)
	m.Write(hello)
	return m.Sum(nil)
}
