//go:build !unix

package reuseport

import "net"

// Supported reports whether Listen can share a port on this system.
const Supported = false

// Listen binds addr (TCP); reusePort is not supported here.
func Listen(addr string, _ bool) (net.Listener, error) {
	return net.Listen("tcp", addr)
}
