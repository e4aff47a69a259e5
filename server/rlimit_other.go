//go:build !unix

package server

// descriptorCap is the default connection cap where there is no RLIMIT_NOFILE.
func descriptorCap() int { return 100_000 }

// descriptorLimit is 0: unknown.
func descriptorLimit() int { return 0 }
