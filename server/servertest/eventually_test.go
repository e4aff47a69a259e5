package servertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message instead of stopping.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	r := &fatalRecorder{TB: t}
	Eventually(r, 10*time.Second, func() error {
		if calls++; calls < 4 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if r.msg != "" || calls != 4 {
		t.Fatalf("calls %d, failure %q; want 4 calls and no failure", calls, r.msg)
	}
}

func TestEventuallyReportsTheLastError(t *testing.T) {
	calls := 0
	r := &fatalRecorder{TB: t}
	start := time.Now()
	Eventually(r, 30*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("still %d", calls)
	})
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before its 30ms", took)
	}
	want := fmt.Sprintf("still %d", calls)
	if !strings.Contains(r.msg, want) || !strings.Contains(r.msg, "30ms") {
		t.Fatalf("failure %q, want the last error %q and the time allowed", r.msg, want)
	}
}

func TestPollChecksOnceMoreAtTheDeadline(t *testing.T) {
	// With no time at all the condition is still asked once.
	if err := Poll(0, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	errNo := errors.New("no")
	if err := Poll(0, func() error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("poll = %v, want %v", err, errNo)
	}
}

func TestCondNamesWhatIsAwaited(t *testing.T) {
	holds := false
	c := Cond("the thing", func() bool { return holds })
	if err := c(); err == nil || err.Error() != "still waiting for the thing" {
		t.Fatalf("%v", err)
	}
	holds = true
	if err := c(); err != nil {
		t.Fatal(err)
	}
}
