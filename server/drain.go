package server

import "time"

// How a drain goes depends on where the clients can go while this gateway stops.
//
//   - handover (ReusePort): a successor already listens on the same ports. The
//     listeners close at once, so the kernel sends every new connection to it; the
//     `reconnect` after_ms are spread over the drain window from now and each
//     connection is closed at its after_ms (a client that ignores the hint still leaves
//     in its turn).
//   - restart (the default): nothing else listens here until this process has exited
//     and its successor has started: `systemctl restart`, a container restarted, a stop
//     and a start by hand. Pacing closes over the window would hold the port for the
//     whole window while every returning client met a 503 and then a closed port.
//     Instead the connections are closed within the first half of the restart gap (the
//     process then exits), and the after_ms fall in [gap, gap+window]: the clients come
//     back spread out, when the new process listens. With an inherited listener
//     (socket activation) the socket outlives the process: it stops accepting at once,
//     and whoever arrives early waits in the kernel's queue instead of being refused.
//   - paced (RestartGap negative): the old behaviour for gateways whose clients have
//     other gateways to go to: after_ms over [0, window] from now, each connection
//     closed at its after_ms, new handshakes answered 503 meanwhile.
type drainPlan struct {
	mode               string
	gap, window        time.Duration // after_ms in [gap, gap+window]
	closeWithin        time.Duration // every connection closed by then
	closeWS, closeHTTP bool          // stop accepting at once
}

func (s *Server) drainPlan() drainPlan {
	w := s.opts.DrainWindow
	switch {
	case s.opts.ReusePort:
		return drainPlan{mode: "handover", window: w, closeWithin: w, closeWS: true, closeHTTP: true}
	case s.opts.RestartGap > 0:
		return drainPlan{mode: "restart", gap: s.opts.RestartGap, window: w, closeWithin: s.opts.RestartGap / 2,
			closeWS: s.opts.WSListener != nil, closeHTTP: s.opts.HTTPListener != nil}
	}
	return drainPlan{mode: "paced", window: w, closeWithin: w}
}
