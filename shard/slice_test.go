package shard

import (
	"testing"
	"time"
)

// A fan-out is written in slices: each flushDirty call writes for at most FlushSlice
// (checked every 32 connections), queues its continuation on the loop once, and the
// continuations finish the pass with every frame written exactly once and in order.
func TestFlushIsSlicedAndResumes(t *testing.T) {
	s := newTestShard(t, Options{FlushSlice: time.Nanosecond})
	loop := s.loop.(*fakeLoop)
	var fakes []*fakeConn
	for range 100 {
		_, fc := openConn(s, -1, "m")
		fakes = append(fakes, fc)
	}
	before := loop.executes
	for seq := uint64(1); seq <= 3; seq++ {
		s.Post(deltaFrame(t, "m", seq, "normal"))
	}
	s.drainInbox()
	if s.dirtyNext != 32 || !s.flushPending {
		t.Fatalf("after one slice: %d flushed, continuation pending %v", s.dirtyNext, s.flushPending)
	}
	if loop.executes-before != 2 { // the inbox wake-up and one continuation
		t.Fatalf("%d tasks queued, want the wake-up and one continuation", loop.executes-before)
	}
	for i := 0; s.flushPending && i < 10; i++ {
		s.flushFn(nil)
	}
	if s.flushPending || len(s.dirty) != 0 {
		t.Fatalf("pass not finished: pending %v, %d dirty", s.flushPending, len(s.dirty))
	}
	for i, fc := range fakes {
		var seqs []uint64
		for _, m := range fc.frames(t, false) {
			if m.Type == "delta" {
				seqs = append(seqs, m.Seq)
			}
		}
		if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 || fc.writes != 1 {
			t.Fatalf("conn %d got seqs %v in %d writes, want 1 2 3 in one", i, seqs, fc.writes)
		}
	}
}
