//go:build race

package backpressure_test

// raceEnabled: the race detector slows every goroutine several times over, so tests
// that need clients to keep up publish more slowly.
const raceEnabled = true
