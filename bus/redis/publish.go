package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// publishScript stores the snapshot, the seq and the title and publishes the frame in
// one atomic step (PROTOCOL.md), refusing any seq but stored + 1, so two publishers of
// one match can never interleave. Two exceptions:
//   - no seq is stored at all (Redis restarted without persistence, or the keys were
//     deleted): the store lost the match, so any seq is accepted and the match is
//     re-seeded at it (status 2);
//   - on a retry (ARGV[7] is 1), the seq is the stored one and so is the snapshot: the
//     attempt whose outcome an error hid applied it; nothing is done (status 3). A first
//     attempt is refused like any other stale seq.
//
// KEYS: seq, snap, info. ARGV: seq, snapshot, title, channel, frame, publish command,
// retry. Returns 1 (applied), 2 (re-seeded), 3 (already applied), or a SEQCONFLICT error.
const publishScript = `
local seq = tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
local status = 1
if not cur then
  if seq ~= 1 then status = 2 end
else
  local stored = tonumber(cur)
  if ARGV[7] == '1' and seq == stored and redis.call('GET', KEYS[2]) == ARGV[2] then
    return 3
  end
  if seq ~= stored + 1 then
    return redis.error_reply('SEQCONFLICT stored seq is ' .. stored)
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'title', ARGV[3], 'seq', ARGV[1])
else
  redis.call('HSET', KEYS[3], 'seq', ARGV[1])
end
redis.call(ARGV[6], ARGV[4], ARGV[5])
return status
`

// Script results.
const (
	publishApplied  = 1
	publishReseeded = 2
	publishAlready  = 3
)

// PublishDelta stores d as the snapshot at d.Seq and publishes d.Frame atomically; it
// returns a wrapped bus.ErrSeqConflict when d.Seq is not the stored seq + 1, except that
// a store with no seq for the match (it lost its data) is re-seeded at d.Seq (see
// publishScript and doc.go). The frame must be a valid `delta` frame of d.Match at d.Seq
// (else ErrBadFrame), so a publisher bug cannot poison every gateway.
//
// It waits for the first connection, and retries through a lost link or a Redis that is
// loading or failing over, until ctx ends (then it returns ErrNotConnected wrapping
// ctx's error). A retry never applies a delta twice: the seq check refuses it, and a
// retry of a delta that was applied is recognised and succeeds.
func (b *Bus) PublishDelta(ctx context.Context, d bus.Delta) error {
	if b.closed.Load() {
		return bus.ErrClosed
	}
	msg, err := bus.Parse(d.Frame)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if msg.Kind != bus.KindDelta || msg.Match != d.Match || msg.Seq != d.Seq {
		return fmt.Errorf("%w: delta %s/%d carries a %s frame of %s/%d", ErrBadFrame, d.Match, d.Seq, kindName(msg.Kind), msg.Match, msg.Seq)
	}
	if !json.Valid(d.State) {
		return fmt.Errorf("%w: state of %s/%d is not JSON", ErrBadFrame, d.Match, d.Seq)
	}
	c := b.waitClient(ctx)
	if c == nil {
		return b.waitErr(ctx)
	}
	var snap strings.Builder
	snap.Grow(len(d.State) + len(d.Match) + 48)
	id, _ := json.Marshal(d.Match) // a valid match id needs no escaping, but be exact
	snap.WriteString(`{"match":`)
	snap.Write(id)
	snap.WriteString(`,"seq":`)
	snap.WriteString(strconv.FormatUint(d.Seq, 10))
	snap.WriteString(`,"state":`)
	snap.Write(d.State)
	snap.WriteString(`}`)
	seq := strconv.FormatUint(d.Seq, 10)
	keys := []string{b.seqKey(d.Match), b.snapKey(d.Match), b.infoKey(d.Match)}
	args := []string{seq, snap.String(), d.Title, b.channel(d.Match), string(d.Frame), b.publishCmd(), "0"}
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		var status int64
		if attempt > 0 {
			args[6] = "1"
		}
		status, err = b.script.Exec(ctx, c, keys, args).AsInt64()
		if err == nil {
			switch status {
			case publishReseeded:
				b.m.reseeds.Inc()
				b.log.Warn("redis had no seq for the match: re-seeded it", "match", d.Match, "seq", d.Seq)
			case publishAlready:
				return nil // applied by an earlier attempt; published then
			}
			break
		}
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "SEQCONFLICT") {
			return fmt.Errorf("%w: %s seq %d: %s", bus.ErrSeqConflict, d.Match, d.Seq, re.Error())
		}
		if !retryable(err) || b.ctx.Err() != nil {
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

// retryable: the link broke or Redis is briefly unable to serve writes; the outcome of
// the script is unknown or nil, and the seq check makes a retry safe.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
