//go:build soak

package main

// The soak build tag (go test -tags soak -run Failover ./cmd/ferry/) runs
// the replication tests' and the crash tests' long forms.
func init() {
	failoverRounds = 10
	partitionRounds = 5
	nativeCrashRounds = 10
}
