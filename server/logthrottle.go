package server

import (
	"sync/atomic"
	"time"
)

// storeWarnEvery is how often the HTTP listener warns that the store does not answer.
const storeWarnEvery = 10 * time.Second

// logThrottle lets one log line through per interval and counts the ones it holds back,
// for warnings that a storm repeats per request (the store unreachable while every
// client of a reconnect storm asks for its snapshot): one line says it, with how many
// it stands for. Safe for concurrent use.
type logThrottle struct {
	interval time.Duration
	next     atomic.Int64 // Unix ns before which lines are held back
	held     atomic.Int64 // lines held back since the last one let through
}

// allow reports whether a line may be logged now, and how many were held back before it.
func (t *logThrottle) allow(now time.Time) (ok bool, held int64) {
	n, next := now.UnixNano(), t.next.Load()
	if n < next || !t.next.CompareAndSwap(next, n+int64(t.interval)) {
		t.held.Add(1)
		return false, 0
	}
	return true, t.held.Swap(0)
}
