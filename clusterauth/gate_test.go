package clusterauth

import "testing"

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "127.8.9.1:1": true, "[::1]:1": true,
		"10.0.0.1:1": false, "[2001:db8::1]:1": false, "[::ffff:10.0.0.1]:1": false, "localhost:1": false, "junk": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}
