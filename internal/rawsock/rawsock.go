// Package rawsock writes to a socket only what it takes without waiting.
//
// A goroutine that must never wait for a peer (an acker answering many
// clients, a connection's sender writing from its caller's memory) writes
// what the socket takes at once with WriteNow or Writev, and hands only
// the rest to a writer goroutine that may wait. The socket is a
// syscall.RawConn of a TCP or Unix connection; on systems where Supported
// is false nothing is written and every byte goes to that writer.
package rawsock
