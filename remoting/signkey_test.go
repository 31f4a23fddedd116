package remoting

import "testing"

// TestSigningKey pins the derivation: clients and brokers of every version
// must derive the same key.
func TestSigningKey(t *testing.T) {
	k := SigningKey("alice", "wonder")
	if want := "mO4jFnVAlGPDJL2dd6yG4uv9qS3GtQjbx8CTsrtaK2w"; k != want {
		t.Fatalf("SigningKey(alice, wonder) = %q, want %q", k, want)
	}
	for _, other := range []string{SigningKey("alice", "wonder2"), SigningKey("alicf", "wonder"), SigningKey("alice\x00", "wonder")} {
		if other == k {
			t.Fatal("another user or password derives the same key")
		}
	}
}
