//go:build !linux

package server

import (
	"net"
	"os"

	"crease/internal/reuseport"
)

// listenWS binds the WebSocket address; off Linux the accept loop takes net.Conns.
func listenWS(addr string, reusePort bool) (net.Listener, error) {
	return reuseport.Listen(addr, reusePort)
}

// inheritedWS takes over f, a listening socket another process bound.
func inheritedWS(f *os.File) (net.Listener, error) {
	defer f.Close()
	return net.FileListener(f)
}
