//go:build unix

package server

import "syscall"

// descriptorCap is the default connection cap: RLIMIT_NOFILE minus a reserve, so that
// accept never runs the process out of descriptors on its own.
func descriptorCap() int {
	limit := descriptorLimit()
	if limit == 0 {
		return 1000
	}
	n := limit - DefaultDescriptorReserve
	if n < 16 {
		n = 16
	}
	return n
}

// descriptorLimit is RLIMIT_NOFILE's soft limit (Go raises it to the hard one at start),
// 0 when unknown.
func descriptorLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
