package server

import "crease/shard"

// ExecuteOnLoops runs fn on every event loop that has a shard, as a task of that loop
// (so fn blocks the loop while it runs). For tests only: it is how the loop-lag test
// stalls the loops.
func ExecuteOnLoops(s *Server, fn func(loop int)) {
	s.eachShard(func(sh *shard.Shard) {
		idx := sh.Index()
		onLoop(sh, func() { fn(idx) })
	})
}
