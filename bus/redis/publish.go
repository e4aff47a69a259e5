package redis

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// The scripts of PROTOCOL.md "Publishing (Redis)". publish.lua is the whole store rule
// set (bus.PublishResult) and is what a publisher in another language runs as well.
var (
	//go:embed publish.lua
	publishScript string
	//go:embed history.lua
	historyScript string
	//go:embed stored.lua
	storedScript string
)

// PublishScript returns the text of the publish script (for publishers that load it
// themselves, and for the documentation's tests).
func PublishScript() string { return publishScript }

// PublishDelta stores d as the snapshot at (d.Epoch, d.Seq), appends its frame to the
// history, writes the journal and publishes the frame, atomically, under the store rules
// of bus.PublishResult; it returns a wrapped bus.ErrSeqConflict when they refuse the
// position. The delta must be valid (bus.CheckDelta; else ErrBadFrame), so that a
// publisher bug cannot poison every gateway.
//
// It waits for the first connection, and retries through a lost link or a Redis that is
// loading or failing over, until ctx ends (then it returns ErrNotConnected wrapping
// ctx's error). A retry never applies a delta twice: the seq check refuses it, and a
// retry of a delta that was applied is recognised and succeeds.
func (b *Bus) PublishDelta(ctx context.Context, d bus.Delta) error {
	if b.closed.Load() {
		return bus.ErrClosed
	}
	msg, err := bus.CheckDelta(d)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	c := b.waitClient(ctx)
	if c == nil {
		return b.waitErr(ctx)
	}
	last := b.pub.slot(d.Match)
	defer last.mu.Unlock()
	h := b.opts.History
	seq := strconv.FormatUint(d.Seq, 10)
	keys := []string{b.seqKey(d.Match), b.snapKey(d.Match), b.infoKey(d.Match), b.histKey(d.Match), b.journalKey(d.Match)}
	args := []string{d.Epoch, seq, string(bus.SnapshotJSON(d.Match, d.Epoch, d.Seq, d.State)), d.Title,
		b.channel(d.Match), string(d.Frame), b.publishCmd(), "0",
		strconv.Itoa(h.MaxDeltas), strconv.FormatInt(h.MaxAge.Milliseconds(), 10), strconv.Itoa(h.MaxBytes),
		strconv.FormatInt(msg.TS/1000, 10), ""}
	journal := func(from int) {
		args = args[:13]
		args[12] = strconv.Itoa(from)
		for _, e := range d.Journal.Entries[from:] {
			args = append(args, string(e))
		}
	}
	if d.Journal != nil {
		journal(d.Journal.From)
	}
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		var rule string
		if attempt > 0 {
			args[7] = "1"
		}
		rule, err = b.script.Exec(ctx, c, keys, args).ToString()
		if err == nil {
			res := bus.PublishResult(rule)
			b.m.publishes.WithLabelValues(rule).Inc()
			switch res {
			case bus.ResultReseededEmpty, bus.ResultReseededBehind:
				b.log.Warn("redis was behind the publisher: re-seeded the match", "match", d.Match, "epoch", d.Epoch, "seq", d.Seq, "rule", rule)
			case bus.ResultDuplicate:
				last.acked(keys, args, time.Now())
				return nil // applied by an earlier attempt; published then
			}
			last.acked(keys, args, time.Now())
			break
		}
		if re, ok := rueidis.IsRedisErr(err); ok {
			switch {
			case strings.HasPrefix(re.Error(), "SEQCONFLICT"):
				b.m.publishes.WithLabelValues(string(bus.ResultRefused)).Inc()
				return fmt.Errorf("%w: %s %s:%d: %s", bus.ErrSeqConflict, d.Match, d.Epoch, d.Seq, re.Error())
			case strings.HasPrefix(re.Error(), "NEEDJOURNAL") && d.Journal != nil && args[12] != "0":
				journal(0) // the store lost the journal's head (or re-seeds): send it all
				attempt--
				continue
			}
		}
		if !retryable(ctx, err) || b.ctx.Err() != nil {
			return fmt.Errorf("redis bus: publish %s/%d: %w", d.Match, d.Seq, err)
		}
		if attempt == 0 {
			b.log.Warn("publish failed, retrying until Redis answers", "match", d.Match, "seq", d.Seq, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("%w: publish %s/%d: %w (last error: %v)", ErrNotConnected, d.Match, d.Seq, ctx.Err(), err)
		case <-b.ctx.Done():
			return bus.ErrClosed
		}
		backoff = min(2*backoff, maxBackoff)
	}
	// The live-match index lives in its own slot in a cluster, so it is a separate
	// command; it need not be atomic with the delta (Matches re-reads each match). The
	// delta is out: a failure here only delays the listing until the next delta.
	score := float64(time.Now().UnixMilli())
	if err := c.Do(ctx, c.B().Zadd().Key(b.matchesKey()).ScoreMember().ScoreMember(score, d.Match).Build()).Error(); err != nil {
		b.log.Warn("indexing the match failed", "match", d.Match, "err", err)
	}
	return nil
}

// History implements bus.History from crease:{ID}:hist (one script, atomic with the
// stored seq). The deltas it gives end at the stored seq, the position their receivers
// hold then: like a snapshot, it is judged by the Tracker of a subscribed match (see
// Snapshot), and ok is false for a store behind what this gateway delivered.
func (b *Bus) History(ctx context.Context, match, epoch string, after uint64) ([]bus.Message, bool, error) {
	if !bus.ValidMatchID(match) {
		return nil, false, fmt.Errorf("%w: %q", bus.ErrUnknownMatch, match)
	}
	c := b.cli()
	if c == nil || b.closed.Load() {
		return nil, false, ErrNotConnected
	}
	at, tracked := b.position(match)
	res, err := b.histRead.Exec(ctx, c, []string{b.seqKey(match), b.histKey(match)}, []string{epoch, strconv.FormatUint(after, 10)}).ToArray()
	if rueidis.IsRedisNil(err) {
		return nil, false, fmt.Errorf("%w: %s", bus.ErrUnknownMatch, match)
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis bus: history of %s: %w", match, err)
	}
	if len(res) < 2 {
		return nil, false, nil
	}
	out := make([]bus.Message, 0, len(res)-2)
	for _, r := range res[2:] {
		data, err := r.AsBytes()
		if err != nil {
			return nil, false, fmt.Errorf("redis bus: history of %s: %w", match, err)
		}
		m, err := bus.Parse(data)
		if err != nil || m.Kind != bus.KindDelta || m.Match != match || m.Epoch != epoch {
			// Not what the script writes (another writer of the key): take the snapshot route.
			b.log.Warn("history holds a frame that is not a delta of its match and epoch", "match", match, "epoch", epoch, "err", err)
			return nil, false, nil
		}
		out = append(out, m)
	}
	if tracked && !b.track.Load().Served(match, at, true, epoch, after+uint64(len(out))) {
		return nil, false, nil // (the gateway counts it: a read "unavailable")
	}
	return out, true, nil
}

// Stored implements bus.Resumer: the snapshot and the journal, atomically.
func (b *Bus) Stored(ctx context.Context, match string) (bus.Stored, error) {
	if !bus.ValidMatchID(match) {
		return bus.Stored{}, fmt.Errorf("%w: %q", bus.ErrUnknownMatch, match)
	}
	c := b.waitClient(ctx)
	if c == nil {
		return bus.Stored{}, b.waitErr(ctx)
	}
	res, err := b.storedRead.Exec(ctx, c, []string{b.snapKey(match), b.journalKey(match)}, nil).ToArray()
	if rueidis.IsRedisNil(err) {
		return bus.Stored{}, fmt.Errorf("%w: %s", bus.ErrUnknownMatch, match)
	}
	if err != nil {
		return bus.Stored{}, fmt.Errorf("redis bus: stored state of %s: %w", match, err)
	}
	raw, err := res[0].AsBytes()
	if err != nil {
		return bus.Stored{}, fmt.Errorf("redis bus: stored state of %s: %w", match, err)
	}
	snap, state, err := parseSnapshot(match, raw)
	if err != nil {
		return bus.Stored{}, err
	}
	s := bus.Stored{Snapshot: snap, State: state}
	for _, r := range res[1:] {
		e, err := r.AsBytes()
		if err != nil {
			return bus.Stored{}, fmt.Errorf("redis bus: journal of %s: %w", match, err)
		}
		s.Journal = append(s.Journal, e)
	}
	return s, nil
}

// parseSnapshot reads the head of a stored snapshot.
func parseSnapshot(match string, raw []byte) (bus.Snapshot, json.RawMessage, error) {
	var head struct {
		Epoch string          `json:"epoch"`
		Seq   uint64          `json:"seq"`
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return bus.Snapshot{}, nil, fmt.Errorf("redis bus: snapshot of %s is not JSON: %w", match, err)
	}
	return bus.Snapshot{Match: match, Epoch: head.Epoch, Seq: head.Seq, Raw: raw}, head.State, nil
}

// retryable: the link broke or Redis is briefly unable to serve writes; the outcome of
// the script is unknown or nil, and the seq check makes a retry safe.
// A context error is the caller's only when the caller's context is done: rueidis also
// reports its own timeouts (a write or ping timeout while Redis is down, seen under
// load) as context.DeadlineExceeded, and those are retried like any link error.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return true // network: connection refused, reset, closed
	}
	for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "BUSY"} {
		if strings.HasPrefix(re.Error(), p) {
			return true
		}
	}
	return false
}

// PublishEvent publishes the JSON text of an `event` frame of match; it is not stored.
func (b *Bus) PublishEvent(ctx context.Context, match string, frame []byte) error {
	if b.closed.Load() {
		return bus.ErrClosed
	}
	msg, err := bus.Parse(frame)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if msg.Kind != bus.KindEvent || msg.Match != match {
		return fmt.Errorf("%w: event of %s is a %s frame of %s", ErrBadFrame, match, kindName(msg.Kind), msg.Match)
	}
	c := b.waitClient(ctx)
	if c == nil {
		return b.waitErr(ctx)
	}
	var cmd rueidis.Completed
	if b.opts.Cluster {
		cmd = c.B().Spublish().Channel(b.channel(match)).Message(string(frame)).Build()
	} else {
		cmd = c.B().Publish().Channel(b.channel(match)).Message(string(frame)).Build()
	}
	if err := c.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("redis bus: publish event of %s: %w", match, err)
	}
	return nil
}

func (b *Bus) publishCmd() string {
	if b.opts.Cluster {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

func (b *Bus) waitErr(ctx context.Context) error {
	if b.closed.Load() || b.ctx.Err() != nil {
		return bus.ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
}

func kindName(k bus.Kind) string {
	if k == bus.KindDelta {
		return "delta"
	}
	return "event"
}
