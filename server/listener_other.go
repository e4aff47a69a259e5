//go:build !linux

package server

import "net"

// listenWS binds the WebSocket address; off Linux the accept loop takes net.Conns.
func listenWS(addr string, reusePort bool) (net.Listener, error) { return listen(addr, reusePort) }
