package client

// Expression types of a subscription, as RocketMQ names them.
const (
	exprTag   = "TAG"
	exprSQL92 = "SQL92"
)

// SubscribeOption changes how Subscribe reads its expression.
type SubscribeOption func(*subscription)

// SQL92 makes the subscription's expression a SQL92 selector on the
// messages' properties, evaluated by the broker (RocketMQ's
// MessageSelector.bySql), such as
//
//	c.Subscribe("orders", "amount > 100 AND region IN ('eu','us')", handle, client.SQL92())
//
// A message is delivered when the expression is true of it: a property it
// lacks makes a comparison unknown, never true. The grammar and its limits
// are in the broker's documentation (docs/native.md); the broker refuses an
// expression it cannot parse at the consumer's first heartbeat, and Start
// fails with ErrInvalidSubscription and the broker's reason, which names
// the position of the fault.
func SQL92() SubscribeOption {
	return func(s *subscription) { s.exprType = exprSQL92 }
}
