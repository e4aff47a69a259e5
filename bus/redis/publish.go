package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// publishScript stores the snapshot, the seq and the title and publishes the frame in
// one atomic step (PROTOCOL.md), refusing any seq but stored + 1, so two publishers of
// one match can never interleave.
//
//	KEYS: seq, snap, info    ARGV: seq, snapshot, title, channel, frame, publish command
const publishScript = `
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) ~= stored + 1 then
  return redis.error_reply('SEQCONFLICT stored seq is ' .. stored)
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'title', ARGV[3], 'seq', ARGV[1])
else
  redis.call('HSET', KEYS[3], 'seq', ARGV[1])
end
redis.call(ARGV[6], ARGV[4], ARGV[5])
return stored + 1
`

// PublishDelta stores d as the snapshot at d.Seq and publishes d.Frame atomically; it
// returns a wrapped bus.ErrSeqConflict when d.Seq is not the stored seq + 1. The frame
// must be a valid `delta` frame of d.Match at d.Seq (else ErrBadFrame), so a publisher
// bug cannot poison every gateway. It waits for the first connection up to ctx.
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
	err = b.script.Exec(ctx, c,
		[]string{b.seqKey(d.Match), b.snapKey(d.Match), b.infoKey(d.Match)},
		[]string{seq, snap.String(), d.Title, b.channel(d.Match), string(d.Frame), b.publishCmd()},
	).Error()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "SEQCONFLICT") {
			return fmt.Errorf("%w: %s seq %d: %s", bus.ErrSeqConflict, d.Match, d.Seq, re.Error())
		}
		return fmt.Errorf("redis bus: publish %s/%d: %w", d.Match, d.Seq, err)
	}
	// The live-match index lives in its own slot in a cluster, so it is a separate
	// command; it need not be atomic with the delta (Matches re-reads each match).
	score := float64(time.Now().UnixMilli())
	if err := c.Do(ctx, c.B().Zadd().Key(b.matchesKey()).ScoreMember().ScoreMember(score, d.Match).Build()).Error(); err != nil {
		return fmt.Errorf("redis bus: index %s: %w", d.Match, err)
	}
	return nil
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
