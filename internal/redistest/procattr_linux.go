package redistest

import "syscall"

// procAttr makes the kernel kill a server when the test process dies without running
// its cleanups (a panic, a -timeout, a SIGKILL), so that no redis-server outlives it.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
