//go:build unix

package server

import "syscall"

// descriptorCap is the default connection cap: RLIMIT_NOFILE minus a reserve, so that
// accept never runs the process out of descriptors on its own.
func descriptorCap() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1000
	}
	n := int(rl.Cur) - DefaultDescriptorReserve
	if n < 16 {
		n = 16
	}
	return n
}
