//go:build !unix

package server

import "net"

const reusePortSupported = false

func listen(addr string, _ bool) (net.Listener, error) {
	return net.Listen("tcp", addr)
}
