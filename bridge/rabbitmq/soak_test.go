//go:build soak

package rabbitmq

import "testing"

// TestOutboundSoak is TestOutboundSurvivesCuts at length: 200,000 messages
// through 50 cuts. go test -tags soak -run Soak -timeout 30m ./bridge/rabbitmq
func TestOutboundSoak(t *testing.T) { outboundCuts(t, 25000, 50) }
