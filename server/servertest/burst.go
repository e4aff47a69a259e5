package servertest

import (
	"sync"
	"testing"
)

// Burst runs f on n goroutines released at the same moment, waits for them all and
// fails t with the first error any returned, named by what ("GET: ..."): the load of
// a thousand requests that arrive together.
func Burst(t testing.TB, n int, what string, f func() error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%s: %v", what, err)
	}
}
