package server

import (
	"fmt"
	"net"

	"crease/internal/reuseport"
)

// wsListener is the WebSocket listener: the inherited socket (Options.WSListener), or
// WSAddr bound here.
func (s *Server) wsListener() (net.Listener, error) {
	if f := s.opts.WSListener; f != nil {
		return inheritedWS(f)
	}
	return listenWS(s.opts.WSAddr, s.opts.ReusePort)
}

// httpListener is the HTTP listener: the inherited socket (Options.HTTPListener), or
// HTTPAddr bound here.
func (s *Server) httpListener() (net.Listener, error) {
	if f := s.opts.HTTPListener; f != nil {
		ln, err := net.FileListener(f) // its own descriptor of the socket
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("inherited HTTP listener %s: %w", f.Name(), err)
		}
		return ln, nil
	}
	return reuseport.Listen(s.opts.HTTPAddr, s.opts.ReusePort)
}
