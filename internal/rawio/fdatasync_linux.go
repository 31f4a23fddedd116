package rawio

import "golang.org/x/sys/unix"

const haveFdatasync = true

func fdatasync(fd int) error { return unix.Fdatasync(fd) }
