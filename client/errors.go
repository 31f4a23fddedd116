package client

import (
	"context"
	"errors"
	"net"

	"github.com/ferrymq/ferry/remoting"
)

// Errors of the SDK; test with errors.Is. Errors the broker answers come
// through wrapped as *remoting.Error: test them against remoting's
// sentinels (remoting.ErrTopicNotExist, remoting.ErrBusy, …).
var (
	// ErrClosed: the Producer or PushConsumer is closed.
	ErrClosed = errors.New("client: closed")
	// ErrNoRoute: no NameServer knows a broker serving the topic.
	ErrNoRoute = errors.New("client: no route to the topic")
	// ErrNoNameServer: no NameServer could be reached.
	ErrNoNameServer = errors.New("client: no NameServer reachable")
	// ErrInvalidMessage: a message the SDK refuses to send (no topic, a bad
	// delay, a property that cannot be encoded, …).
	ErrInvalidMessage = errors.New("client: invalid message")
	// ErrInvalidOption: an option with a value out of range, or one that
	// does not apply to what is being made.
	ErrInvalidOption = errors.New("client: invalid option")
	// ErrInvalidSubscription: a subscription Subscribe refuses.
	ErrInvalidSubscription = errors.New("client: invalid subscription")
	// ErrStarted: Subscribe or Start on a consumer already started.
	ErrStarted = errors.New("client: consumer already started")
	// ErrNoSubscription: Start on a consumer without any subscription.
	ErrNoSubscription = errors.New("client: no subscription")
	// ErrHandlerPanic: a message handler panicked; the message is treated
	// as failed.
	ErrHandlerPanic = errors.New("client: message handler panicked")
)

// retryable reports whether a failed send may succeed on another attempt:
// transport failures and the broker answers RocketMQ's producers retry,
// but for NO_PERMISSION: from Ferry it refuses the credentials or the
// topic, which another try does not change.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed) {
		return false
	}
	var re *remoting.Error
	if !errors.As(err, &re) {
		return true // connection refused, reset, closed…
	}
	switch re.Code {
	case remoting.TopicNotExist, remoting.ServiceNotAvailable, remoting.SystemError,
		remoting.SystemBusy, remoting.FlushDiskTimeout:
		return true
	}
	return false
}

// connFailure reports whether err is a failure to reach a broker: the
// connection could not be made, or closed under the request. (A timeout
// is not one: a slow broker is not gone.)
func connFailure(err error) bool {
	var oe *net.OpError
	return errors.Is(err, remoting.ErrConnClosed) || errors.As(err, &oe)
}
