package server

import (
	"sync"

	"crease/shard"
)

// ExecuteOnLoops runs fn on every event loop that has a shard, as a task of that loop
// (so fn blocks the loop while it runs). For tests only: it is how the loop-lag test
// stalls the loops.
func ExecuteOnLoops(s *Server, fn func(loop int)) {
	s.eachShard(func(sh *shard.Shard) {
		idx := sh.Index()
		onLoop(sh, func() { fn(idx) })
	})
}

// Sweep runs the connection sweep (heartbeat, idle close, handshake deadline, token
// expiry) on every loop at the connection clock's current time and returns once all
// have run: a test that moved the clock knows from then on what the sweep decided.
func Sweep(s *Server) {
	var wg sync.WaitGroup
	s.eachShard(func(sh *shard.Shard) {
		wg.Add(1)
		onLoop(sh, func() { defer wg.Done(); sh.Sweep(s.ping) })
	})
	wg.Wait()
}
