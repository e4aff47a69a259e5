package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"crease/bus"
	"crease/internal/redistest"
)

// store is what the store-rule tests need of a bus: the embedded one and the Redis one
// must decide every case alike (PROTOCOL.md "Publishing (Redis)").
type store interface {
	bus.Publisher
	bus.Snapshots
	bus.History
	bus.Resumer
}

// stores runs f against a fresh embedded store and a fresh Redis store with history h.
func stores(t *testing.T, h bus.HistoryOptions, f func(t *testing.T, s store, results func(bus.PublishResult) float64, flush func())) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		e := bus.NewEmbeddedWith(h)
		f(t, e, func(r bus.PublishResult) float64 { return float64(e.PublishResults()[r]) }, nil)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		o := testOptions(srv.Addr())
		o.History = h
		b, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		f(t, b, func(r bus.PublishResult) float64 { return value(b.m.publishes.WithLabelValues(string(r))) },
			func() {
				if _, err := srv.Cli("FLUSHALL"); err != nil {
					t.Fatal(err)
				}
			})
	})
}

func epochDelta(match, epoch string, seq uint64, ts int64) bus.Delta {
	return bus.Delta{
		Match: match, Title: "T", Epoch: epoch, Seq: seq,
		State: []byte(fmt.Sprintf(`{"score":{"runs":%d}}`, seq)),
		Frame: []byte(epochFrame(match, epoch, seq, ts)),
	}
}

// epochA is m1's delta seq in epoch A at ts 1, for publishSeqs.
func epochA(seq uint64) bus.Delta { return epochDelta("m1", "A", seq, 1) }

func TestStoreRules(t *testing.T) {
	t.Parallel()
	stores(t, bus.HistoryOptions{}, func(t *testing.T, s store, results func(bus.PublishResult) float64, _ func()) {
		ctx := t.Context()
		pub := func(epoch string, seq uint64) error { return s.PublishDelta(ctx, epochDelta("m1", epoch, seq, 1)) }
		// An empty store takes seq 1 of any epoch: a new stream.
		if err := pub("A", 1); err != nil {
			t.Fatal(err)
		}
		if err := pub("A", 2); err != nil {
			t.Fatal(err)
		}
		// Stored + 1 only; the store ahead of the publisher refuses it.
		for _, seq := range []uint64{1, 2} {
			if err := pub("A", seq); !errors.Is(err, bus.ErrSeqConflict) {
				t.Fatalf("A:%d over A:2: %v", seq, err)
			}
		}
		// Another publisher's stream (another epoch), whatever its seq, is refused.
		for _, seq := range []uint64{1, 3, 9} {
			if err := pub("B", seq); !errors.Is(err, bus.ErrSeqConflict) {
				t.Fatalf("B:%d over A:2: %v", seq, err)
			}
		}
		// A publisher ahead of the store (it lags) re-seeds it at its own next seq.
		if err := pub("A", 6); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Snapshot(ctx, "m1")
		if err != nil || snap.Epoch != "A" || snap.Seq != 6 {
			t.Fatalf("snapshot %+v %v", snap, err)
		}
		var head struct {
			Match, Epoch string
			Seq          uint64
			State        json.RawMessage
		}
		if err := json.Unmarshal(snap.Raw, &head); err != nil || head.Match != "m1" || head.Epoch != "A" || head.Seq != 6 || string(head.State) != `{"score":{"runs":6}}` {
			t.Fatalf("raw snapshot %s: %v", snap.Raw, err)
		}
		ms, err := s.Matches(ctx)
		if err == nil && len(ms) == 1 && (ms[0].Epoch != "A" || ms[0].Seq != 6) {
			t.Fatalf("matches %+v", ms)
		}
		want := map[bus.PublishResult]float64{bus.ResultNewEpoch: 1, bus.ResultApplied: 1, bus.ResultRefused: 5, bus.ResultReseededBehind: 1}
		for _, r := range bus.PublishResults {
			if got := results(r); got != want[r] {
				t.Errorf("%s: %v, want %v", r, got, want[r])
			}
		}
		// Nothing refused was stored or published into the history.
		msgs, ok, err := s.History(ctx, "m1", "A", 5)
		if err != nil || !ok || len(msgs) != 1 || msgs[0].Seq != 6 {
			t.Fatalf("history after 5: %v %v %v", msgs, ok, err)
		}
	})
}

func TestStoreHistory(t *testing.T) {
	t.Parallel()
	h := bus.HistoryOptions{MaxDeltas: 5, MaxAge: time.Minute, MaxBytes: 10 << 10}
	stores(t, h, func(t *testing.T, s store, _ func(bus.PublishResult) float64, _ func()) {
		ctx := t.Context()
		now := time.Now().UnixMicro()
		for seq := uint64(1); seq <= 8; seq++ {
			if err := s.PublishDelta(ctx, epochDelta("m1", "A", seq, now)); err != nil {
				t.Fatal(err)
			}
		}
		seqs := func(after uint64) ([]uint64, bool) {
			t.Helper()
			msgs, ok, err := s.History(ctx, "m1", "A", after)
			if err != nil {
				t.Fatal(err)
			}
			var out []uint64
			for _, m := range msgs {
				if m.Epoch != "A" || m.Match != "m1" || string(m.Data) != epochFrame("m1", "A", m.Seq, m.TS) {
					t.Fatalf("history message %+v", m)
				}
				out = append(out, m.Seq)
			}
			return out, ok
		}
		// Five kept: 4..8, so a client at 3 or later recovers, one at 2 does not.
		if got, ok := seqs(3); !ok || !slices.Equal(got, []uint64{4, 5, 6, 7, 8}) {
			t.Fatalf("after 3: %v %v", got, ok)
		}
		if got, ok := seqs(6); !ok || !slices.Equal(got, []uint64{7, 8}) {
			t.Fatalf("after 6: %v %v", got, ok)
		}
		if got, ok := seqs(8); !ok || len(got) != 0 {
			t.Fatalf("after 8 (current): %v %v", got, ok)
		}
		if _, ok := seqs(2); ok {
			t.Fatal("after 2 is older than the history")
		}
		if _, ok := seqs(9); ok {
			t.Fatal("after 9 is ahead of the store")
		}
		if _, ok, err := s.History(ctx, "m1", "B", 7); ok || err != nil {
			t.Fatalf("another epoch: %v %v", ok, err)
		}
		if _, _, err := s.History(ctx, "nope", "A", 1); !errors.Is(err, bus.ErrUnknownMatch) {
			t.Fatalf("unknown match: %v", err)
		}
		// Age: a delta two minutes newer pushes every older one out.
		if err := s.PublishDelta(ctx, epochDelta("m1", "A", 9, now+2*time.Minute.Microseconds())); err != nil {
			t.Fatal(err)
		}
		if got, ok := seqs(8); !ok || !slices.Equal(got, []uint64{9}) {
			t.Fatalf("after 8, once aged: %v %v", got, ok)
		}
		if _, ok := seqs(7); ok {
			t.Fatal("8 aged out, yet after 7 recovered")
		}
		// A re-seed (the store was behind) restarts the history: no gap inside it.
		if err := s.PublishDelta(ctx, epochDelta("m1", "A", 12, now+2*time.Minute.Microseconds())); err != nil {
			t.Fatal(err)
		}
		if _, ok := seqs(9); ok {
			t.Fatal("10 and 11 were never stored, yet after 9 recovered")
		}
		if got, ok := seqs(11); !ok || !slices.Equal(got, []uint64{12}) {
			t.Fatalf("after 11: %v %v", got, ok)
		}
	})
}

func TestStoreHistoryBytes(t *testing.T) {
	t.Parallel()
	frame := len(epochFrame("m1", "A", 10, 1))
	h := bus.HistoryOptions{MaxDeltas: 100, MaxBytes: 3*frame + frame/2}
	stores(t, h, func(t *testing.T, s store, _ func(bus.PublishResult) float64, _ func()) {
		publishSeqs(t, s, 1, 20, epochA)
		msgs, ok, err := s.History(t.Context(), "m1", "A", 17)
		if err != nil || !ok || len(msgs) != 3 {
			t.Fatalf("after 17: %d %v %v", len(msgs), ok, err)
		}
		if _, ok, _ := s.History(t.Context(), "m1", "A", 16); ok {
			t.Fatal("a fourth frame is over the byte bound")
		}
	})
}

func TestStoreJournal(t *testing.T) {
	t.Parallel()
	stores(t, bus.HistoryOptions{}, func(t *testing.T, s store, _ func(bus.PublishResult) float64, flush func()) {
		ctx := t.Context()
		var log [][]byte
		pub := func(seq uint64, from int, entries ...string) {
			t.Helper()
			log = log[:from:from]
			for _, e := range entries {
				log = append(log, []byte(e))
			}
			d := epochDelta("m1", "A", seq, 1)
			d.Journal = &bus.Journal{Entries: log, From: from}
			if err := s.PublishDelta(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		check := func(seq uint64, want ...string) {
			t.Helper()
			st, err := s.Stored(ctx, "m1")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range st.Journal {
				got = append(got, string(e))
			}
			if st.Epoch != "A" || st.Seq != seq || string(st.State) != fmt.Sprintf(`{"score":{"runs":%d}}`, seq) || !slices.Equal(got, want) {
				t.Fatalf("stored %s:%d %s %q, want seq %d %q", st.Epoch, st.Seq, st.State, got, seq, want)
			}
		}
		pub(1, 0, "info")
		pub(2, 1, "b1")
		pub(3, 2, "b2")
		check(3, "info", "b1", "b2")
		pub(4, 1, "b1'", "b2") // a correction of b1: the tail is rewritten
		check(4, "info", "b1'", "b2")
		d := epochDelta("m1", "A", 5, 1) // a delta without a journal leaves it alone
		if err := s.PublishDelta(ctx, d); err != nil {
			t.Fatal(err)
		}
		check(5, "info", "b1'", "b2")
		if _, err := s.Stored(ctx, "nope"); !errors.Is(err, bus.ErrUnknownMatch) {
			t.Fatalf("unknown: %v", err)
		}
		if flush == nil {
			return
		}
		// The store lost everything: the next delta sends only its new entry, the store
		// asks for the whole journal, and gets it with the re-seed.
		flush()
		pub(6, 3, "b3")
		check(6, "info", "b1'", "b2", "b3")
	})
}

// A retry whose earlier attempt was applied succeeds without publishing again; the same
// delta sent again as a first attempt is refused (two publishers in lockstep).
func TestPublishRetryIsDuplicate(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newClosingBus(t, testOptions(srv.Addr()))
	d := epochDelta("m1", "A", 1, 1)
	if err := b.PublishDelta(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishDelta(t.Context(), d); !errors.Is(err, bus.ErrSeqConflict) {
		t.Fatalf("the same delta again: %v", err)
	}
	c := b.cli()
	snap := string(bus.SnapshotJSON(d.Match, d.Epoch, d.Seq, d.State))
	keys := []string{b.seqKey("m1"), b.snapKey("m1"), b.infoKey("m1"), b.histKey("m1"), b.journalKey("m1")}
	args := []string{"A", "1", snap, "", b.channel("m1"), string(d.Frame), "PUBLISH", "1", "300", "600000", "1000000", "0", ""}
	rule, err := b.script.Exec(context.Background(), c, keys, args).ToString()
	if err != nil || rule != string(bus.ResultDuplicate) {
		t.Fatalf("retry: %q %v", rule, err)
	}
	if n, _ := srv.Cli("LLEN", "crease:{m1}:hist"); n != "1" {
		t.Fatalf("history holds %s frames after a duplicate", n)
	}
}

func TestPublishRefusesBadEpoch(t *testing.T) {
	t.Parallel()
	stores(t, bus.HistoryOptions{}, func(t *testing.T, s store, _ func(bus.PublishResult) float64, _ func()) {
		for _, d := range []bus.Delta{
			epochDelta("m1", "", 1, 1),
			epochDelta("m1", "has space", 1, 1),
			epochDelta("m1", "123456789012345678901234567890123", 1, 1),
			func() bus.Delta {
				d := epochDelta("m1", "A", 1, 1)
				d.Frame = []byte(epochFrame("m1", "B", 1, 1))
				return d
			}(),
			func() bus.Delta {
				d := epochDelta("m1", "A", 1, 1)
				d.Frame = []byte(deltaFrameNoEpoch("m1", 1))
				return d
			}(),
		} {
			if err := s.PublishDelta(t.Context(), d); err == nil {
				t.Errorf("published %q with frame %s", d.Epoch, d.Frame)
			}
		}
		if _, err := s.Snapshot(t.Context(), "m1"); !errors.Is(err, bus.ErrUnknownMatch) {
			t.Fatalf("a refused delta was stored: %v", err)
		}
	})
}

func deltaFrameNoEpoch(match string, seq uint64) string {
	return fmt.Sprintf(`{"type":"delta","match":%q,"seq":%d,"prio":"high","ts":1,"patch":{}}`, match, seq)
}

// A history that expired (nothing published for MaxAge) starts again with the next
// delta, its byte count from zero.
func TestHistoryExpiresWithSilence(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	o := testOptions(srv.Addr())
	o.History = bus.HistoryOptions{MaxDeltas: 10, MaxBytes: 3 * len(epochFrame("m1", "A", 10, 1))}
	b := newClosingBus(t, o)
	publishSeqs(t, b, 1, 3, epochA)
	if ttl, _ := srv.Cli("PTTL", "crease:{m1}:hist"); ttl == "-1" || ttl == "-2" {
		t.Fatalf("history without expiry: PTTL %s", ttl)
	}
	if _, err := srv.Cli("DEL", "crease:{m1}:hist"); err != nil { // what the expiry does
		t.Fatal(err)
	}
	publishSeqs(t, b, 4, 6, epochA)
	msgs, ok, err := b.History(t.Context(), "m1", "A", 3)
	if err != nil || !ok || len(msgs) != 3 {
		t.Fatalf("after the expiry: %d %v %v (a stale byte count would have trimmed them)", len(msgs), ok, err)
	}
}
