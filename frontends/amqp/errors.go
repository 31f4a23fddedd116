package amqp

import "fmt"

// Reply codes (spec §1.4.2 "Constants").
const (
	codeReplySuccess     = 200
	codeContentTooLarge  = 311
	codeNoRoute          = 312
	codeConnectionForced = 320
	codeInvalidPath      = 402
	codeAccessRefused    = 403
	codeNotFound         = 404
	codeResourceLocked   = 405
	codePreconditionFail = 406
	codeFrameError       = 501
	codeSyntaxError      = 502
	codeCommandInvalid   = 503
	codeChannelError     = 504
	codeUnexpectedFrame  = 505
	codeResourceError    = 506
	codeNotAllowed       = 530
	codeNotImplemented   = 540
	codeInternalError    = 541
)

// replyText names each reply code as the spec does.
var replyText = map[uint16]string{
	codeContentTooLarge: "CONTENT_TOO_LARGE", codeNoRoute: "NO_ROUTE", codeConnectionForced: "CONNECTION_FORCED",
	codeInvalidPath: "INVALID_PATH", codeAccessRefused: "ACCESS_REFUSED", codeNotFound: "NOT_FOUND",
	codeResourceLocked: "RESOURCE_LOCKED", codePreconditionFail: "PRECONDITION_FAILED", codeFrameError: "FRAME_ERROR",
	codeSyntaxError: "SYNTAX_ERROR", codeCommandInvalid: "COMMAND_INVALID", codeChannelError: "CHANNEL_ERROR",
	codeUnexpectedFrame: "UNEXPECTED_FRAME", codeResourceError: "RESOURCE_ERROR", codeNotAllowed: "NOT_ALLOWED",
	codeNotImplemented: "NOT_IMPLEMENTED", codeInternalError: "INTERNAL_ERROR",
}

// Error is an AMQP error: a channel error closes its channel, a connection
// error (Conn) the connection, with Code and Text in the close method
// [spec §1.2]. Method is the method that caused it, when one did.
type Error struct {
	Code   uint16
	Text   string
	Method methodID
	Conn   bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s - %s", e.Code, replyText[e.Code], e.Text)
}

// on sets the method that caused e.
func (e *Error) on(m methodID) *Error {
	e.Method = m
	return e
}

// replyTextOf is the reply-text of a close: RabbitMQ's form, the code's
// name and the reason.
func (e *Error) replyTextOf() string { return replyText[e.Code] + " - " + e.Text }

func connErr(code uint16, text string) *Error { return &Error{Code: code, Text: text, Conn: true} }
func chanErr(code uint16, text string) *Error { return &Error{Code: code, Text: text} }
