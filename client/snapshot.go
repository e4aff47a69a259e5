package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"crease/bus"
)

// FetchSnapshot fetches the snapshot of match once (no retry).
func (c *Client) FetchSnapshot(ctx context.Context, match string) (Snapshot, error) {
	if !bus.ValidMatchID(match) {
		return Snapshot{}, fmt.Errorf("%w: %q", ErrBadMatchID, match)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.SnapshotURL(match), nil)
	if err != nil {
		return Snapshot{}, err
	}
	tok, err := c.tokens.current(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return Snapshot{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// Not started: the publisher writes the snapshot with the first delta, so no
		// delta exists yet and every one will reach the connection.
		return Snapshot{Match: match, State: json.RawMessage("{}")}, nil
	default:
		return Snapshot{}, &snapshotStatusError{match: match, code: resp.StatusCode, retryAfter: retryAfter(resp)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Snapshot{}, err
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return Snapshot{}, fmt.Errorf("client: snapshot of %s: %w", match, err)
	}
	if s.Match != match || !isJSONObject(s.State) {
		return Snapshot{}, fmt.Errorf("client: snapshot of %s: bad body (match %q, state %.40q)", match, s.Match, s.State)
	}
	return s, nil
}

func (l *loop) fetch(r *matchRun) {
	if r.fetching {
		r.refetch = true
		return
	}
	r.fetching = true
	var delay time.Duration
	switch {
	case r.retries > 0:
		// The last snapshot did not close the hole: do not hammer the endpoint, but
		// never wait longer than the backoff's cap either (a store behind the stream for
		// a while must not leave the match frozen for minutes).
		delay = l.c.jitter(l.c.opts.Backoff.retryWindow(r.retries - 1))
	case r.landed > 0:
		// A snapshot landed and no delta followed before this resync, gap or new epoch:
		// a storm of them, or a snapshot of another epoch than the deltas, is fetched
		// at a growing interval rather than at the endpoint's round-trip rate. Four
		// doublings at most (4 s with the defaults): a slow consumer whose deltas all
		// become resyncs still gets a fresh state every few seconds.
		delay = l.c.jitter(l.c.opts.Backoff.retryWindow(min(r.landed-1, maxLandedDoublings)))
	}
	if o := l.c.opts.Observer; o != nil {
		o.SnapshotRequested(r.match)
	}
	ctx, out, c := l.connCtx, l.fetched, l.c
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for attempt := 0; ; attempt++ {
			if !sleepCtx(ctx, delay) {
				return
			}
			fctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
			s, err := c.FetchSnapshot(fctx, r.match)
			cancel()
			if err == nil {
				select {
				case out <- fetchResult{run: r, snap: s}:
				case <-ctx.Done():
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			delay = c.jitter(c.opts.Backoff.retryWindow(attempt))
			var se *snapshotStatusError
			if errors.As(err, &se) && se.retryAfter > 0 {
				// A 503 says when to come back (the store is behind, PROTOCOL.md): not
				// before (up to the cap: a gateway's hour must not freeze the match), and
				// spread after it so that its clients do not return at once.
				delay += min(se.retryAfter, c.opts.Backoff.Cap)
			}
			c.opts.Logger.Warn("crease client: snapshot fetch", "match", r.match, "err", err, "retry_in", delay)
		}
	}()
}

// maxLandedDoublings bounds the refetch interval of snapshots landing with no delta
// between them (matchRun.landed) to Backoff.Base·2^3.
const maxLandedDoublings = 3

// snapshotStatusError is a snapshot answer other than 200 and 404; retryAfter is the
// Retry-After of a 503 (0: none).
type snapshotStatusError struct {
	match      string
	code       int
	retryAfter time.Duration
}

func (e *snapshotStatusError) Error() string {
	return fmt.Sprintf("client: snapshot of %s: HTTP %d", e.match, e.code)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// snapshot applies a fetch result.
func (l *loop) snapshot(res fetchResult) {
	r := res.run
	if l.runs[r.match] != r {
		return // unsubscribed meanwhile
	}
	r.fetching = false
	r.landed++
	if o := l.c.opts.Observer; o != nil {
		o.Snapshot(res.snap)
	}
	if err := r.stream.ApplySnapshot(res.snap); err != nil {
		l.c.opts.Logger.Warn("crease client: snapshot", "match", r.match, "err", err)
	}
	if r.stream.Seq() > 0 {
		cause := CauseResync
		if !r.delivered {
			cause = CauseSnapshot
		}
		l.deliver(r, cause)
	}
	switch {
	case r.stream.Waiting():
		r.retries++
		l.fetch(r)
	case r.refetch:
		r.refetch = false
		r.retries = 0
		r.stream.Resync() // the resync came after this fetch was sent
		l.fetch(r)
	default:
		r.retries = 0
	}
}
