package server

import (
	"testing"

	"crease/shard"
)

func seqFrames(from, to uint64) []*shard.Frame {
	var out []*shard.Frame
	for s := from; s <= to; s++ {
		out = append(out, &shard.Frame{Seq: s, Kind: shard.KindDelta, Bytes: []byte("x")})
	}
	return out
}

// keepLocked joins a read's deltas to the live ones delivered while it was out and to
// what was kept, or says they do not join.
func TestKeepJoinsReadAndLiveDeltas(t *testing.T) {
	r := &recoverer{}
	for _, tc := range []struct {
		name        string
		kept        [2]uint64 // first, last of what was kept; {0, 0}: nothing
		after, h    uint64    // the read: deltas after+1 .. h
		rec         [2]uint64 // live deltas delivered meanwhile; {0, 0}: none
		ok          bool
		first, last uint64
	}{
		{"read alone", [2]uint64{}, 4, 9, [2]uint64{}, true, 5, 9},
		{"live within the read", [2]uint64{}, 4, 9, [2]uint64{7, 9}, true, 5, 9},
		{"live past the read", [2]uint64{}, 4, 9, [2]uint64{8, 12}, true, 5, 12},
		{"live right after", [2]uint64{}, 4, 9, [2]uint64{10, 11}, true, 5, 11},
		{"a hole", [2]uint64{}, 4, 9, [2]uint64{11, 12}, false, 0, 0},
		{"nothing to read", [2]uint64{}, 9, 9, [2]uint64{}, true, 10, 9},
		{"kept reaches further back", [2]uint64{2, 9}, 4, 9, [2]uint64{10, 10}, true, 2, 10},
		{"the read reaches further back", [2]uint64{6, 9}, 2, 9, [2]uint64{}, true, 3, 9},
	} {
		m := &keptMatch{name: "m"}
		if tc.kept != [2]uint64{} {
			m.kept, m.epoch, m.first, m.frames = true, "e", tc.kept[0], seqFrames(tc.kept[0], tc.kept[1])
		}
		var rec []*shard.Frame
		if tc.rec != [2]uint64{} {
			rec = seqFrames(tc.rec[0], tc.rec[1])
		}
		ok := r.keepLocked(m, &histRead{m: m, epoch: "e", after: tc.after}, seqFrames(tc.after+1, tc.h), rec, false)
		if ok != tc.ok {
			t.Errorf("%s: joined %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if m.first != tc.first || m.last() != tc.last {
			t.Errorf("%s: kept %d..%d, want %d..%d", tc.name, m.first, m.last(), tc.first, tc.last)
		}
		for i, f := range m.frames {
			if f.Seq != m.first+uint64(i) {
				t.Errorf("%s: frame %d is seq %d", tc.name, i, f.Seq)
			}
		}
	}
}
