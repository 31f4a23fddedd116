package remoting

import (
	"errors"
	"fmt"
)

// Request codes (RocketMQ's RequestCode) that Ferry serves.
const (
	SendMessage                   int16 = 10
	PullMessage                   int16 = 11
	QueryMessage                  int16 = 12
	QueryConsumerOffset           int16 = 14
	UpdateConsumerOffset          int16 = 15
	UpdateAndCreateTopic          int16 = 17
	SearchOffsetByTimestamp       int16 = 29
	GetMaxOffset                  int16 = 30
	GetMinOffset                  int16 = 31
	ViewMessageByID               int16 = 33
	HeartBeat                     int16 = 34
	UnregisterClient              int16 = 35
	ConsumerSendMsgBack           int16 = 36
	EndTransaction                int16 = 37
	GetConsumerListByGroup        int16 = 38
	LockBatchMQ                   int16 = 41
	UnlockBatchMQ                 int16 = 42
	RegisterBroker                int16 = 103
	UnregisterBroker              int16 = 104
	GetRouteInfoByTopic           int16 = 105
	GetBrokerClusterInfo          int16 = 106
	GetAllTopicListFromNS         int16 = 206
	GetAllSubscriptionGroupConfig int16 = 201
	GetTopicStatsInfo             int16 = 202
	GetConsumeStats               int16 = 208
	SendMessageV2                 int16 = 310
	SendBatchMessage              int16 = 320
)

// CheckClientConfig asks a broker whether it takes a subscription (a
// SQL92 filter) before a client subscribes with it.
const CheckClientConfig int16 = 46

// Request codes a broker sends its clients.
const (
	// NotifyConsumerIdsChanged (one-way, ext field consumerGroup): the
	// group's members changed; a member rebalances at once.
	NotifyConsumerIdsChanged int16 = 40
	// CheckTransactionState (one-way; header tranStateTableOffset,
	// commitLogOffset, msgId, transactionId, offsetMsgId; body the half
	// message): a producer of the group answers with END_TRANSACTION.
	CheckTransactionState int16 = 39
)

// Response codes (RocketMQ's ResponseCode).
const (
	Success                   int16 = 0
	SystemError               int16 = 1
	SystemBusy                int16 = 2
	RequestCodeNotSupported   int16 = 3
	FlushDiskTimeout          int16 = 10
	SlaveNotAvailable         int16 = 11
	ServiceNotAvailable       int16 = 14
	MessageIllegal            int16 = 13
	NoPermission              int16 = 16
	TopicNotExist             int16 = 17
	PullNotFound              int16 = 19
	PullRetryImmediately      int16 = 20
	PullOffsetMoved           int16 = 21
	QueryNotFound             int16 = 22
	SubscriptionParseFailed   int16 = 23
	SubscriptionNotExist      int16 = 24
	SubscriptionGroupNotExist int16 = 26
)

// Error is a response code other than Success as an error. Errors with the
// same code match with errors.Is, whatever their remarks.
type Error struct {
	Code   int16
	Remark string
}

func (e *Error) Error() string {
	return fmt.Sprintf("remoting: %s (code %d): %s", codeName(e.Code), e.Code, e.Remark)
}

// Is matches another *Error with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Sentinels to test responses against with errors.Is.
var (
	ErrSystem              = &Error{Code: SystemError}
	ErrBusy                = &Error{Code: SystemBusy}
	ErrNotSupported        = &Error{Code: RequestCodeNotSupported}
	ErrMessageIllegal      = &Error{Code: MessageIllegal}
	ErrNoPermission        = &Error{Code: NoPermission}
	ErrTopicNotExist       = &Error{Code: TopicNotExist}
	ErrPullNotFound        = &Error{Code: PullNotFound}
	ErrPullOffsetMoved     = &Error{Code: PullOffsetMoved}
	ErrQueryNotFound       = &Error{Code: QueryNotFound}
	ErrSubscriptionInvalid = &Error{Code: SubscriptionParseFailed}
)

// ResponseError returns nil for a successful response, else its *Error.
func ResponseError(c *Command) error {
	if c.Code == Success {
		return nil
	}
	return &Error{Code: c.Code, Remark: c.Remark}
}

var codeNames = map[int16]string{
	SystemError: "system error", SystemBusy: "system busy", RequestCodeNotSupported: "request code not supported",
	FlushDiskTimeout: "flush disk timeout", SlaveNotAvailable: "slave not available", ServiceNotAvailable: "service not available",
	MessageIllegal: "message illegal", NoPermission: "no permission", TopicNotExist: "topic not exist",
	PullNotFound: "pull not found", PullRetryImmediately: "pull retry immediately", PullOffsetMoved: "pull offset moved",
	QueryNotFound: "query not found", SubscriptionParseFailed: "subscription parse failed",
	SubscriptionNotExist: "subscription not exist", SubscriptionGroupNotExist: "subscription group not exist",
}

func codeName(code int16) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	return "error"
}
