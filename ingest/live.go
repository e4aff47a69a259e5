package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"crease/bus"
)

// Errors of a Live match. Each wraps one of the three kinds the publish API answers
// differently: ErrImpossible (400), ErrOutOfOrder (409), ErrBadBall (400).
var (
	// ErrImpossible: the input is well formed but impossible cricket (negative runs, an
	// eleventh wicket, a ball past the overs, a chase past its target ...).
	ErrImpossible = errors.New("ingest: impossible")
	// ErrOutOfOrder: a ball that skips a position, or a ball after the result.
	ErrOutOfOrder = errors.New("ingest: out of order")
	// ErrBadBall: the ball or info is not well formed (unknown field, wrong type, a
	// position out of range).
	ErrBadBall = errors.New("ingest: malformed")
)

// BallPos is the position of a delivery as the publish API names it: Innings counts from
// 1 over all innings including super overs, Over from 0 as in Cricsheet, Ball from 1
// over the over's deliveries (wides and no-balls take a position).
type BallPos struct {
	Innings int `json:"innings"`
	Over    int `json:"over"`
	Ball    int `json:"ball"`
}

func (p BallPos) String() string {
	return fmt.Sprintf("innings %d, over %d, ball %d", p.Innings, p.Over, p.Ball)
}

// BallPost is one ball of the publish API: its position, the innings it belongs to, and
// the Cricsheet delivery. Target is the innings' target when the data has one (a revised
// D/L target), given with any ball of the innings.
type BallPost struct {
	BallPos
	Team      string          `json:"team"`
	SuperOver bool            `json:"super_over"`
	Delivery  json.RawMessage `json:"delivery"`
	Target    *csTarget       `json:"target,omitempty"`
	Prio      string          `json:"prio,omitempty"` // the API's, not part of the ball
}

// liveBall is an applied ball: its post in canonical form (what duplicates are compared
// by and what the journal holds) and the decoded delivery.
type liveBall struct {
	seq   uint64 // the seq of the delta that applied (or last corrected) it; 0 unknown
	pos   BallPos
	canon []byte
	post  BallPost
	d     csDelivery
}

// Live is a cricket match fed ball by ball (the publish API), scored by the same engine
// as a match file. It keeps its journal (the info and every ball, in order), so that a
// restarted publisher rebuilds it exactly (NewLiveFromJournal) and a correction is
// recomputed from the corrected ball list. A Live is used by one goroutine at a time.
type Live struct {
	id      string
	info    json.RawMessage
	balls   []liveBall
	journal [][]byte // entry 0 the info, then one per ball; infos after balls are appended
	infos   []int    // journal indexes of info updates after the first, for rebuilds
	m       *Match
	e       *engine
	done    bool // the result is in
	// rewritten: a correction rewrote the journal; the store must take it whole.
	rewritten bool
	// trusted while NewLiveFromJournal replays a stored journal (impossible.go).
	trusted bool
}

// ApplyResult says what a ball did.
type ApplyResult int

// The outcomes of Live.Ball.
const (
	BallApplied    ApplyResult = iota + 1 // the next position
	BallDuplicate                         // the same content at an applied position: nothing to publish
	BallCorrection                        // other content at an applied position: the state was recomputed
)

type journalEntry struct {
	Info json.RawMessage `json:"info,omitempty"`
	Ball json.RawMessage `json:"ball,omitempty"`
	Seq  uint64          `json:"seq,omitempty"` // the delta that applied the ball
}

// NewLive starts a match from a Cricsheet info object. The outcome may be absent (the
// match is not over); when present, the match is finished at once.
func NewLive(id string, info json.RawMessage) (*Live, error) { return newLive(id, info, false) }

func newLive(id string, info json.RawMessage, trusted bool) (*Live, error) {
	l := &Live{id: id, trusted: trusted}
	if err := l.setInfo(info); err != nil {
		return nil, err
	}
	l.journal = [][]byte{mustEntry(journalEntry{Info: l.info})}
	return l, nil
}

func mustEntry(e journalEntry) []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic("ingest: journal entry: " + err.Error())
	}
	return b
}

// setInfo validates info and (re)starts the scoring over the balls applied so far.
func (l *Live) setInfo(info json.RawMessage) error {
	if !bus.ValidMatchID(l.id) {
		return fmt.Errorf("%w: match id %q is not 1 to 64 characters of A-Z a-z 0-9 _ -", ErrBadBall, l.id)
	}
	var in csInfo
	if err := decodeStrict(info, &in); err != nil {
		return fmt.Errorf("%w: info: %s", ErrBadBall, cleanJSONErr(err))
	}
	m := &Match{id: l.id, file: l.id, info: in}
	if err := m.checkInfoOf(true); err != nil {
		return fmt.Errorf("%w: %s", ErrImpossible, err.(*Error).Msg)
	}
	if l.m != nil && (in.Teams[0] != l.m.info.Teams[0] || in.Teams[1] != l.m.info.Teams[1]) && len(l.balls) > 0 {
		return fmt.Errorf("%w: the teams cannot change once balls were bowled", ErrImpossible)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, info); err != nil {
		return fmt.Errorf("%w: info: %v", ErrBadBall, err)
	}
	old, oldInfo := l.m, l.info
	l.info = buf.Bytes()
	if err := l.rescore(l.balls); err != nil {
		l.m, l.info = old, oldInfo
		return err
	}
	return nil
}

// ID is the match id.
func (l *Live) ID() string { return l.id }

// Title is "Team A v Team B".
func (l *Live) Title() string { return l.m.Title() }

// State returns the current state (shared: do not modify).
func (l *Live) State() *State { return &l.e.st }

// Finished reports whether the result is in.
func (l *Live) Finished() bool { return l.done }

// Journal returns the journal entries (the bus may keep them; they are never modified).
func (l *Live) Journal() [][]byte { return l.journal }

// JournalFrom is the index of the first journal entry that changed since the store took
// stored entries: stored itself, or 0 after a correction rewrote the journal. Stored
// says the store now holds the journal.
func (l *Live) JournalFrom(stored int) int {
	if l.rewritten {
		return 0
	}
	return min(stored, len(l.journal))
}

// Stored records that the store holds the whole journal.
func (l *Live) Stored() { l.rewritten = false }

// Balls counts the balls applied.
func (l *Live) Balls() int { return len(l.balls) }

// rescore scores info + balls from scratch into a new engine, checking every ball. It
// changes l only when every ball is plausible.
func (l *Live) rescore(balls []liveBall) error {
	var in csInfo
	_ = json.Unmarshal(l.info, &in) // validated by setInfo
	m := &Match{id: l.id, file: l.id, info: in}
	_ = m.checkInfoOf(true) // sets bpo
	e := &engine{live: true, m: m, trusted: l.trusted}
	e.st = m.initialState()
	e.phase = phaseStart
	for i := range balls {
		if _, err := e.apply(&balls[i]); err != nil {
			return err
		}
	}
	done := in.Outcome.Winner != "" || in.Outcome.Result != ""
	if done {
		if msg := e.outcomeImpossible(); msg != "" {
			return fmt.Errorf("%w: %s", ErrImpossible, msg)
		}
		e.finish()
	}
	l.m, l.e, l.balls, l.done = m, e, balls, done
	return nil
}

// apply scores one more ball (its position checked by the caller) into e.
func (e *engine) apply(b *liveBall) (stepInfo, error) {
	m := e.m
	var info stepInfo
	if b.pos.Innings > len(m.innings) {
		inn := &innings{csInnings: csInnings{Team: b.post.Team, SuperOver: b.post.SuperOver, Target: b.post.Target}}
		if msg := e.cannotOpen(len(m.innings), inn); msg != "" {
			return info, fmt.Errorf("%w: %s: %s", ErrImpossible, b.pos, msg)
		}
		m.innings = append(m.innings, inn)
		if len(m.innings) > 1 {
			brk := e.endInnings() // the break: e.inn moves on
			info.text = brk.text + ". "
		}
		e.inn = len(m.innings) - 1
		inn.overs = [][]delivery{{{csDelivery: b.d, over: b.pos.Over}}}
		inn.n = 1
		start := e.startInnings()
		info.text += start.text + ". "
	} else {
		inn := m.innings[b.pos.Innings-1]
		if b.post.Team != inn.Team || b.post.SuperOver != inn.SuperOver {
			return info, fmt.Errorf("%w: %s: innings %d is %s's (super_over %v)", ErrImpossible, b.pos, b.pos.Innings, inn.Team, inn.SuperOver)
		}
		if b.post.Target != nil && (inn.Target == nil || *inn.Target != *b.post.Target) {
			return info, fmt.Errorf("%w: %s: the target of an innings is given with its first ball", ErrImpossible, b.pos)
		}
		d := delivery{csDelivery: b.d, over: b.pos.Over}
		if msg := e.implausible(&d); msg != "" {
			return info, fmt.Errorf("%w: %s: %s", ErrImpossible, b.pos, msg)
		}
		if b.pos.Ball == 1 {
			inn.overs = append(inn.overs, []delivery{d})
		} else {
			inn.overs[len(inn.overs)-1] = append(inn.overs[len(inn.overs)-1], d)
		}
		inn.n++
	}
	// A new innings' first ball (over 0, ball 1) cannot be implausible: nothing has
	// happened in it yet.
	inn := m.innings[e.inn]
	last := inn.overs[len(inn.overs)-1]
	d := &last[len(last)-1]
	bi := e.ball(d, nil)
	info.text += bi.text
	info.prio = bi.prio
	return info, nil
}

// finish ends the last innings (if any) and sets the result.
func (e *engine) finish() stepInfo {
	e.inn = max(len(e.m.innings)-1, 0)
	return e.endInnings()
}

// nextPositions are the positions that may follow the last applied ball.
func (l *Live) next() []BallPos {
	if len(l.balls) == 0 {
		return []BallPos{{1, 0, 1}}
	}
	p := l.balls[len(l.balls)-1].pos
	return []BallPos{{p.Innings, p.Over, p.Ball + 1}, {p.Innings, p.Over + 1, 1}, {p.Innings + 1, 0, 1}}
}

// DecodeBall reads one ball of the publish API strictly: unknown fields, a malformed
// delivery or an impossible one alone (negative runs, a wide with runs off the bat ...)
// are refused.
func DecodeBall(data []byte) (BallPost, error) {
	var p BallPost
	if err := decodeStrict(data, &p); err != nil {
		return p, fmt.Errorf("%w: %s", ErrBadBall, cleanJSONErr(err))
	}
	if p.Innings < 1 || p.Innings > 100 || p.Over < 0 || p.Over > 10000 || p.Ball < 1 || p.Ball > 100 {
		return p, fmt.Errorf("%w: position %s is out of range (innings from 1, over from 0, ball from 1)", ErrBadBall, p.BallPos)
	}
	if p.Team == "" {
		return p, fmt.Errorf("%w: no team", ErrBadBall)
	}
	if len(p.Delivery) == 0 {
		return p, fmt.Errorf("%w: no delivery", ErrBadBall)
	}
	switch p.Prio {
	case "", "high", "normal":
	default:
		return p, fmt.Errorf("%w: prio %q is not high or normal", ErrBadBall, p.Prio)
	}
	if t := p.Target; t != nil {
		if t.Runs < 1 || t.Overs < 0 || t.Overs > 1000 {
			return p, fmt.Errorf("%w: target %+v", ErrImpossible, *t)
		}
	}
	return p, nil
}

// prepare decodes and checks a post into a liveBall.
func (l *Live) prepare(p BallPost) (liveBall, error) {
	b := liveBall{pos: p.BallPos, post: p}
	if err := decodeStrict(p.Delivery, &b.d); err != nil {
		return b, fmt.Errorf("%w: delivery: %s", ErrBadBall, cleanJSONErr(err))
	}
	if msg := checkDelivery(&b.d); msg != "" {
		return b, fmt.Errorf("%w: %s: %s", ErrImpossible, p.BallPos, msg)
	}
	if p.Team != l.m.info.Teams[0] && p.Team != l.m.info.Teams[1] {
		return b, fmt.Errorf("%w: team %q is not one of the teams", ErrImpossible, p.Team)
	}
	if t := p.Target; t != nil {
		if _, ok := oversToBalls(t.Overs, l.m.bpo); !ok {
			return b, fmt.Errorf("%w: target.overs %v is not overs.balls", ErrImpossible, t.Overs)
		}
	}
	canon := p
	canon.Prio = ""
	dj, _ := json.Marshal(b.d) // a decoded delivery always marshals
	canon.Delivery = dj
	b.post = canon
	b.canon, _ = json.Marshal(canon)
	return b, nil
}

// Ball applies one ball, whose delta (when it changes the state) gets seq. At the next position it is scored (BallApplied); at an applied
// position with the same content nothing changes (BallDuplicate); with other content it
// replaces that ball and the whole state is recomputed (BallCorrection). Any other
// position is ErrOutOfOrder; impossible cricket is ErrImpossible and changes nothing.
// The prio and text describe the applied ball (high for a correction). For a
// duplicate, seq is the one the ball got.
func (l *Live) Ball(p BallPost, seq uint64) (res ApplyResult, prio bus.Prio, text string, got uint64, err error) {
	b, err := l.prepare(p)
	if err != nil {
		return 0, 0, "", 0, err
	}
	b.seq = seq
	for i := len(l.balls) - 1; i >= 0; i-- {
		if l.balls[i].pos != b.pos {
			continue
		}
		if bytes.Equal(l.balls[i].canon, b.canon) {
			return BallDuplicate, 0, "", l.balls[i].seq, nil
		}
		balls := append(append(append([]liveBall(nil), l.balls[:i]...), b), l.balls[i+1:]...)
		if err := l.rescore(balls); err != nil {
			return 0, 0, "", 0, err
		}
		l.journal = l.rebuildJournal()
		l.rewritten = true
		return BallCorrection, bus.PrioHigh, "Correction at " + b.pos.String(), seq, nil
	}
	if l.done {
		return 0, 0, "", 0, fmt.Errorf("%w: the match has its result; a ball after it is refused", ErrOutOfOrder)
	}
	ok := false
	for _, n := range l.next() {
		ok = ok || n == b.pos
	}
	if !ok {
		return 0, 0, "", 0, fmt.Errorf("%w: %s skips a position: the next is one of %v", ErrOutOfOrder, b.pos, l.next())
	}
	// apply checks the ball before it changes anything, so a refusal changes nothing.
	info, err := l.e.apply(&b)
	if err != nil {
		return 0, 0, "", 0, err
	}
	l.balls = append(l.balls, b)
	l.journal = append(l.journal, mustEntry(journalEntry{Ball: b.canon, Seq: seq}))
	return BallApplied, info.prio, info.text, seq, nil
}

// SetInfo updates the info (an outcome finishes the match); the state is recomputed.
// Once the match has its result, an info must keep an outcome: it may correct the
// outcome (another winner, margin or result), but an info without one, which would set
// the finished match live again, is refused.
func (l *Live) SetInfo(info json.RawMessage) error {
	if l.done {
		var in struct {
			Outcome csOutcome `json:"outcome"`
		}
		if json.Unmarshal(info, &in) == nil && in.Outcome.Winner == "" && in.Outcome.Result == "" {
			return fmt.Errorf("%w: the match has its result; an info without outcome cannot set it live again (send the corrected outcome instead)", ErrImpossible)
		}
	}
	return l.updateInfo(info)
}

// updateInfo is SetInfo without the check that a result stays: a journal written before
// that check may hold an info without outcome after one with it, and must still rebuild.
func (l *Live) updateInfo(info json.RawMessage) error {
	if err := l.setInfo(info); err != nil {
		return err
	}
	l.infos = append(l.infos, len(l.journal))
	l.journal = append(l.journal, mustEntry(journalEntry{Info: l.info}))
	return nil
}

// rebuildJournal writes the journal of the current info and balls (after a correction).
func (l *Live) rebuildJournal() [][]byte {
	j := make([][]byte, 0, len(l.balls)+1)
	j = append(j, mustEntry(journalEntry{Info: l.info}))
	for i := range l.balls {
		j = append(j, mustEntry(journalEntry{Ball: l.balls[i].canon, Seq: l.balls[i].seq}))
	}
	l.infos = nil
	return j
}

// NewLiveFromJournal rebuilds a match from its journal (as Journal returned it).
func NewLiveFromJournal(id string, journal [][]byte) (*Live, error) {
	if len(journal) == 0 {
		return nil, fmt.Errorf("%w: empty journal", ErrBadBall)
	}
	var first journalEntry
	if err := json.Unmarshal(journal[0], &first); err != nil || len(first.Info) == 0 {
		return nil, fmt.Errorf("%w: journal entry 1 is not the info", ErrBadBall)
	}
	// The store took every entry once: the rules added since do not refuse them now
	// (trusted), and the match goes on under all of them.
	l, err := newLive(id, first.Info, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		l.trusted = false
		if l.e != nil {
			l.e.trusted = false
		}
	}()
	for i, raw := range journal[1:] {
		var e journalEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%w: journal entry %d: %v", ErrBadBall, i+2, err)
		}
		switch {
		case len(e.Info) > 0:
			err = l.updateInfo(e.Info)
		case len(e.Ball) > 0:
			var p BallPost
			if p, err = DecodeBall(e.Ball); err == nil {
				_, _, _, _, err = l.Ball(p, e.Seq)
			}
		default:
			err = fmt.Errorf("%w: journal entry %d is empty", ErrBadBall, i+2)
		}
		if err != nil {
			return nil, fmt.Errorf("journal entry %d: %w", i+2, err)
		}
	}
	return l, nil
}
