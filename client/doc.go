// Package client is Ferry's Go SDK: a Producer and a PushConsumer that speak
// Ferry's native protocol, which is RocketMQ's 4.x remoting protocol (see
// docs/native.md). They find brokers through the NameServers, so they work
// against any number of brokers, and against RocketMQ's own brokers for
// what the two have in common.
//
// # Producing
//
// A Producer looks a topic's route up at a NameServer, picks a write queue
// (round robin over every queue of every broker, or by the hash of
// Message.ShardingKey so that messages with the same key keep their order)
// and sends with SEND_MESSAGE_V2, synchronously (Send), in the background
// (SendAsync), without an answer (SendOneway) or several messages at once
// (SendBatch). A failed send is retried on another broker's queue.
//
// Routes are refreshed every 30 s; a route that lost a broker, or whose
// broker could not be reached, is asked for every second until the broker
// is back (for a minute after the loss), so a restarted broker is used again
// within seconds.
//
// A TransactionProducer sends transactional messages, as RocketMQ's does:
// SendInTransaction stores a half message no consumer sees, runs the local
// transaction and commits (the message is delivered) or rolls back (it
// never is); a transaction left unknown is resolved by the broker asking
// the producer group's TransactionChecker.
//
// # Consuming
//
// A PushConsumer is a member of a consumer group, by default in clustering
// mode: each message goes to one member. Members balance the topic's queues among
// themselves on the client side, as RocketMQ's AllocateMessageQueueAveragely
// does: every member sorts the group's member ids and the queues and takes
// its share, every 5 s, and at once when a broker says the group's members
// changed (NOTIFY_CONSUMER_IDS_CHANGED) or a route's brokers change. For
// each queue it owns, a member long-polls the broker and
// hands messages to a bounded pool of handler goroutines. A handler that
// fails (returns an error or panics) sends the message back to the broker,
// which redelivers it later through the group's retry topic with a growing
// delay, and moves it to the dead-letter topic after WithMaxRetries
// attempts. Offsets are committed to the broker every second: the committed
// offset of a queue is its lowest message not yet handled, so delivery is
// at least once.
//
// # Ordered consumption
//
// With WithOrdered, a PushConsumer locks each queue it is assigned at the
// queue's broker (LOCK_BATCH_MQ) before pulling it, so that no two members
// of the group work on one queue even while a rebalance moves it: a queue
// still locked by its previous owner is tried again at the next rebalance.
// Locks are renewed every 20 s (the broker keeps them 60 s) and released
// (UNLOCK_BATCH_MQ) once the queue is stopped and its offset committed. A
// queue's messages are handled one at a time, in queue order, on the
// queue's own goroutine. A failed message blocks its queue: it is retried
// in place after a second, ReconsumeTimes counting up, and after
// WithMaxRetries retries it is moved to the dead-letter topic at once.
//
// # Broadcasting
//
// With WithBroadcasting, every member reads every queue of its topics, so
// each receives every message. Offsets are kept in the consumer's memory,
// not at the broker (RocketMQ keeps them in a local file): a consumer
// starts per WithConsumeFrom each time it starts. There is no retry topic:
// a failed message is retried in place after a second.
//
// # Pulling
//
// A PullConsumer leaves the choice of queues and offsets to its caller:
// Queues lists a topic's queues, Pull long-polls one from an offset, and
// CommitOffset and CommittedOffset keep the group's offsets at the broker.
//
// # Goroutines
//
// Every goroutine has an owner, a stop signal and a waiter; Close stops and
// waits for all of them. A Producer owns its route refresher and the
// goroutines of SendAsync. A PushConsumer owns its route refresher, three
// loops (rebalance, which also renews an ordered consumer's locks,
// heartbeat, offset commit), one pull goroutine per owned queue (which runs
// an ordered consumer's handlers) and its handler workers. A PullConsumer
// owns its route refresher.
//
// # Errors
//
// Errors are tested with errors.Is: this package's sentinels (ErrClosed,
// ErrNoRoute, ErrInvalidMessage…) and the broker's response codes of
// package remoting (remoting.ErrTopicNotExist, remoting.ErrBusy…), which
// come through wrapped.
package client
