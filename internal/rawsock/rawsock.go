// Package rawsock reads and writes a nonblocking socket with raw system
// calls.
//
// A goroutine that must never wait for a peer (an acker answering many
// clients, a connection's sender writing from its caller's memory) writes
// what the socket takes at once with WriteNow or Writev, and hands only
// the rest to a writer goroutine that may wait. Read waits in Go's poller
// for something to read, as net.Conn's Read does.
//
// The system calls are raw (syscall.RawSyscall): on a nonblocking socket
// they return at once, so the runtime need not be told, as it is of a
// system call that may block. Telling it is what wakes its monitor thread
// (sysmon) from its sleep when the process was idle: with a fleet of
// devices each sending now and then, the broker goes idle and wakes
// thousands of times a second, and those wakes were 4% of its CPU time.
//
// The race detector does not see the kernel read or write the buffers of a
// raw system call, as it sees those of syscall.Read and Write: a buffer
// reused while the call runs would go unreported.
//
// The socket is a syscall.RawConn of a TCP or Unix connection; on systems
// where Supported is false nothing is written and every byte goes to that
// writer, and Read is not to be used.
package rawsock
