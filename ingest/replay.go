package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"crease/bus"
)

// Replay pacing.
const (
	// RealTime is the Speed of a live match: about 30 s a ball.
	RealTime = 1.0 / 30
	// DefaultLoopPause is the pause between the end of a match and its restart.
	DefaultLoopPause = 10 * time.Second
)

// Errors of ReplayOptions.
var (
	ErrBadSpeed     = errors.New("ingest: speed must be a finite number of deltas per second, 0 or more")
	ErrBadLoopPause = errors.New("ingest: loop pause must not be negative")
)

// ReplayOptions says how Replay paces and numbers a match. The zero value replays once,
// as fast as possible, from seq 1.
type ReplayOptions struct {
	// Speed is deltas (about balls) per second; 0 is as fast as possible, RealTime a live
	// match.
	Speed float64
	// Loop restarts the match after LoopPause when it ends, seq going on.
	Loop bool
	// LoopPause is the pause before a restart; 0 means DefaultLoopPause.
	LoopPause time.Duration
	// Epoch is the epoch of the stream: "" starts a new one (bus.NewEpoch); a publisher
	// resuming a stored match gives the stored epoch.
	Epoch string
	// StartSeq is the seq of the first delta, so that a publisher resumes after the seq
	// stored on the bus; 0 means 1.
	StartSeq uint64
	// Base is the state stored at StartSeq-1, which the first patch turns into the
	// scheduled state; nil for a new match.
	Base json.RawMessage
	// Resume, when set, is the stored match to continue (bus.Resumer's Stored): its
	// epoch, seq and state replace Epoch, StartSeq and Base, and the replay goes on from
	// the step of the source that the stored journal names, never from the first ball.
	// A store this replay did not write is refused with ErrResume.
	Resume *bus.Stored
	// Now is the clock of the frames' ts; nil is time.Now.
	Now func() time.Time
}

func (o *ReplayOptions) validate() error {
	if math.IsNaN(o.Speed) || math.IsInf(o.Speed, 0) || o.Speed < 0 {
		return ErrBadSpeed
	}
	if o.LoopPause < 0 {
		return ErrBadLoopPause
	}
	if o.LoopPause == 0 {
		o.LoopPause = DefaultLoopPause
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Replay publishes the deltas of m, each with its commentary event, paced by opts. It
// blocks until the match ends (never with Loop), ctx is done (returning ctx.Err(); the
// ball being published then is finished first, for up to publishGrace) or publishing
// fails. A delta refused with bus.ErrSeqConflict means that another publisher
// owns the match or StartSeq is stale: Replay stops and returns it wrapped, without
// retrying. Event errors other than bus.ErrClosed are ignored: events may be dropped.
// Run one Replay per match, each in its own goroutine.
func Replay(ctx context.Context, pub bus.Publisher, m *Match, opts ReplayOptions) error {
	if m == nil {
		return ErrNoMatch
	}
	next := func() (*Match, error) { return m, nil }
	return replay(ctx, pub, m, next, opts)
}

func replay(ctx context.Context, pub bus.Publisher, m *Match, next func() (*Match, error), opts ReplayOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	if r := opts.Resume; r != nil {
		opts.Epoch, opts.StartSeq, opts.Base = r.Epoch, r.Seq+1, r.State
	}
	st, err := newStepper(m, next, opts.Epoch, opts.StartSeq, opts.Base)
	if err != nil {
		return err
	}
	if opts.Resume != nil {
		if err := st.resume(opts.Resume); err != nil {
			return err
		}
		if st.done() && !opts.Loop {
			return nil // the match was over when the publisher stopped
		}
	}
	var interval time.Duration
	if opts.Speed > 0 {
		interval = time.Duration(float64(time.Second) / opts.Speed)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	wait := func(d time.Duration) error {
		if d <= 0 {
			return ctx.Err()
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		u, err := st.Next(opts.Now())
		if err != nil {
			return err
		}
		if err := publishBall(ctx, pub, u); err != nil {
			return err
		}
		d := interval
		if u.Last {
			if !opts.Loop {
				return nil
			}
			d = opts.LoopPause
		}
		if err := wait(d); err != nil {
			return err
		}
	}
}

// publishGrace is how long the publishes of a ball begun before Replay's context ended
// may still take. Stopping a replay finishes the ball in flight instead of abandoning a
// write whose outcome nobody would learn: sent but not yet answered, it could land after
// Replay returned, and whoever stopped the replay would read a snapshot that is not the
// last one.
const publishGrace = 5 * time.Second

// publishBall publishes u's delta and its commentary event, with ctx's values but ended
// only publishGrace after ctx is.
func publishBall(ctx context.Context, pub bus.Publisher, u Update) error {
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(publishGrace, cancel) })
	defer stop()
	if err := pub.PublishDelta(bctx, u.Delta); err != nil {
		if errors.Is(err, bus.ErrSeqConflict) {
			return fmt.Errorf("ingest: replay of %s stopped: delta %d refused (another publisher owns the match, or the start seq is stale): %w", u.Delta.Match, u.Delta.Seq, err)
		}
		return fmt.Errorf("ingest: replay of %s: publish delta %d: %w", u.Delta.Match, u.Delta.Seq, err)
	}
	if u.Event != nil {
		if err := pub.PublishEvent(bctx, u.Delta.Match, u.Event); err != nil && errors.Is(err, bus.ErrClosed) {
			return fmt.Errorf("ingest: replay of %s: publish event: %w", u.Delta.Match, err)
		}
	}
	return nil
}
