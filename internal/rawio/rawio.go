// Package rawio makes system calls that return at once with raw system
// calls (syscall.RawSyscall), without telling the runtime, as it is told of
// a system call that may block. Telling it is what wakes its monitor thread
// (sysmon) from its sleep when the process was idle: with a fleet of
// devices each sending now and then, the broker goes idle and wakes
// thousands of times a second, and each wake of sysmon costs it a futex
// wake, a 20 µs sleep and two thread switches.
//
// Sockets: a goroutine that must never wait for a peer (an acker answering
// many clients, a connection's sender writing from its caller's memory)
// writes what the socket takes at once with WriteNow or Writev, and hands
// only the rest to a writer goroutine that may wait. Read waits in Go's
// poller for something to read, as net.Conn's Read does. The socket is a
// syscall.RawConn of a TCP or Unix connection; on systems where Supported
// is false nothing is written and every byte goes to that writer, and Read
// is not to be used.
//
// Files: WriteAt writes into the page cache, which takes a write at once
// unless the kernel is throttling dirty pages or must read a page first.
// A raw call that blocks holds its processor (P): no other goroutine runs
// on it, and a stop of the world waits for it. So WriteAt writes raw only
// while such writes have been fast; after one slow write it goes through
// the runtime's blocking path, which hands the processor off, for a while.
//
// Fsyncs wait for the disk, milliseconds, and so are not made raw: Sync
// and SyncData hand them to the kernel's io_uring and wait for the
// completion in Go's poller, holding no processor (sync.go).
//
// The race detector does not see the kernel read or write the buffers of a
// raw system call, as it sees those of syscall.Read and Write: a buffer
// reused while the call runs would go unreported.
package rawio
