package servertest

import (
	"bytes"
	"sync"
)

// LockedBuffer collects what a child process writes (os/exec's copying goroutine) while
// the test reads it. It is safe for concurrent use; the zero value is empty.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
