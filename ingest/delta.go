package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"crease/bus"
)

// Errors of NewStepper and Replay options.
var (
	// ErrBadBase: the base state is not a JSON object.
	ErrBadBase = errors.New("ingest: base state is not a JSON object")
	// ErrNoMatch: a nil match.
	ErrNoMatch = errors.New("ingest: no match")
	// ErrBadEpoch: an epoch that is not 1 to 32 characters of A-Z a-z 0-9 _ -.
	ErrBadEpoch = errors.New("ingest: epoch is not 1 to 32 characters of A-Z a-z 0-9 _ -")
)

// Update is one numbered change of a match, ready to publish: the delta (state, frame,
// seq) and the commentary event that goes with it.
type Update struct {
	Delta bus.Delta
	Prio  bus.Prio
	Patch json.RawMessage // the frame's patch, against the state at Delta.Seq-1
	Over  string          // the over of the state, "19.6"
	Text  string          // the commentary line
	Event []byte          // the `event` frame of the commentary (same ts); nil without one
	// Restart: the first delta of a new play-through (its patch resets the finished state).
	Restart bool
	// Last: the delta carrying the result; the next one starts over.
	Last bool
}

// Stepper numbers the steps of a match into deltas. After the last step it starts the
// match over (or the next match of its source): a loop restart is one more delta whose
// patch resets the state, and seq goes on. A Stepper is used by one goroutine.
type Stepper struct {
	next  func() (*Match, error)
	m     *Match
	e     *engine
	epoch string
	seq   uint64 // seq of the last update
	prev  []byte // state at seq
	game  uint64 // play-throughs started before this one (loops, or the simulator's games)
	step  int    // steps of this play-through done
}

// NewStepper steps through m, looping, in a new epoch (bus.NewEpoch). firstSeq is the seq of the first delta (0 means 1);
// base is the state stored at firstSeq-1, against which the first patch is computed (nil
// for a new match: the first patch is then the whole state).
func NewStepper(m *Match, firstSeq uint64, base json.RawMessage) (*Stepper, error) {
	if m == nil {
		return nil, ErrNoMatch
	}
	return newStepper(m, func() (*Match, error) { return m, nil }, "", firstSeq, base)
}

func newStepper(m *Match, next func() (*Match, error), epoch string, firstSeq uint64, base json.RawMessage) (*Stepper, error) {
	if epoch == "" {
		epoch = bus.NewEpoch()
	}
	if !bus.ValidEpoch(epoch) {
		return nil, ErrBadEpoch
	}
	if firstSeq == 0 {
		firstSeq = 1
	}
	prev := []byte("{}")
	if len(base) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(base, &obj); err != nil || obj == nil {
			return nil, ErrBadBase
		}
		prev = append([]byte(nil), base...)
	}
	return &Stepper{next: next, m: m, e: newEngine(m), epoch: epoch, seq: firstSeq - 1, prev: prev}, nil
}

// Epoch is the epoch of the stream the Stepper numbers.
func (s *Stepper) Epoch() string { return s.epoch }

// Seq is the seq of the last update (firstSeq-1 before the first).
func (s *Stepper) Seq() uint64 { return s.seq }

// Match is the match being stepped.
func (s *Stepper) Match() *Match { return s.m }

// Next computes the next update, stamped with ts.
func (s *Stepper) Next(ts time.Time) (Update, error) {
	restart := false
	if s.e.done() {
		m, err := s.next()
		if err != nil {
			return Update{}, err
		}
		if m == nil {
			return Update{}, ErrNoMatch
		}
		s.m, s.e, restart = m, newEngine(m), true
		s.game, s.step = s.game+1, 0
	}
	info := s.e.step()
	s.step++
	cur := s.e.st.marshal()
	patch, err := jsonpatch.CreateMergePatch(s.prev, cur)
	if err != nil {
		return Update{}, fmt.Errorf("ingest: %s: merge patch: %w", s.m.id, err)
	}
	seq := s.seq + 1
	micros := ts.UnixMicro()
	frame := deltaFrame(s.m.id, s.epoch, seq, info.prio, micros, patch)
	if len(frame) > bus.MaxMessageBytes {
		return Update{}, fmt.Errorf("ingest: %s: delta %d is %d bytes, over the bus limit", s.m.id, seq, len(frame))
	}
	u := Update{
		Delta: bus.Delta{Match: s.m.id, Title: s.m.Title(), Epoch: s.epoch, Seq: seq, State: cur, Frame: frame,
			Journal: &bus.Journal{Entries: [][]byte{replayEntry(s.m.id, s.game, s.step)}}},
		Prio:    info.prio,
		Patch:   patch,
		Over:    s.e.st.Over,
		Text:    info.text,
		Restart: restart,
		Last:    info.last,
	}
	if info.text != "" {
		u.Event = eventFrame(s.m.id, micros, s.e.st.Over, info.text)
	}
	s.seq, s.prev = seq, cur
	return u, nil
}

// deltaFrame is the exact `delta` frame of PROTOCOL.md, fields in the documented order.
func deltaFrame(match, epoch string, seq uint64, prio bus.Prio, ts int64, patch []byte) []byte {
	id, _ := json.Marshal(match) // a string always marshals
	b := make([]byte, 0, len(patch)+len(id)+len(epoch)+108)
	b = append(b, `{"type":"delta","match":`...)
	b = append(b, id...)
	b = append(b, `,"epoch":"`...)
	b = append(b, epoch...) // a valid epoch needs no escaping
	b = append(b, '"')
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prio":"`...)
	b = append(b, prio.String()...)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"patch":`...)
	b = append(b, patch...)
	return append(b, '}')
}

type commentaryFrame struct {
	Type  string `json:"type"`
	Match string `json:"match"`
	Prio  string `json:"prio"`
	TS    int64  `json:"ts"`
	Kind  string `json:"kind"`
	Over  string `json:"over"`
	Text  string `json:"text"`
}

// eventFrame is the `event` frame of a commentary line.
func eventFrame(match string, ts int64, over, text string) []byte {
	b, _ := json.Marshal(commentaryFrame{Type: "event", Match: match, Prio: "low", TS: ts, Kind: "commentary", Over: over, Text: text})
	return b
}

// DeltaFrame is the exact `delta` frame of PROTOCOL.md, for publishers of states that no
// Stepper computes (the publish API).
func DeltaFrame(match, epoch string, seq uint64, prio bus.Prio, ts int64, patch []byte) []byte {
	return deltaFrame(match, epoch, seq, prio, ts, patch)
}

// CommentaryFrame is the `event` frame of a commentary line.
func CommentaryFrame(match string, ts int64, over, text string) []byte {
	return eventFrame(match, ts, over, text)
}

// ErrResume: a stored match cannot be resumed by this replay (another source wrote it,
// or the file changed), so the replay refuses rather than rewind the score.
var ErrResume = errors.New("ingest: cannot resume the stored match")

// replayPos is the journal of a replay: where in its source it is. One entry, rewritten
// with every delta (the store keeps only the last).
type replayPos struct {
	Replay struct {
		Match string `json:"match"`
		Game  uint64 `json:"game"` // play-throughs before this one
		Step  int    `json:"step"` // steps of this one done
	} `json:"replay"`
}

func replayEntry(match string, game uint64, step int) []byte {
	var p replayPos
	p.Replay.Match, p.Replay.Game, p.Replay.Step = match, game, step
	b, _ := json.Marshal(p)
	return b
}

// resume moves the Stepper to where the stored match is: the play-through and step its
// journal names (or, for a store without a journal, the step of the first play-through
// whose state is the stored one), checking that the state there is the stored state.
func (s *Stepper) resume(st *bus.Stored) error {
	want, err := canonJSON(st.State)
	if err != nil {
		return fmt.Errorf("%w: %s: the stored state is not JSON: %v", ErrResume, s.m.id, err)
	}
	if len(st.Journal) == 0 {
		for k := 0; !s.e.done(); k++ {
			if got, _ := canonJSON(s.e.st.marshal()); k > 0 && bytes.Equal(got, want) {
				s.step = k
				return nil
			}
			s.e.step()
		}
		if got, _ := canonJSON(s.e.st.marshal()); bytes.Equal(got, want) {
			s.step = s.m.Steps()
			return nil
		}
		return fmt.Errorf("%w: %s: the stored state at seq %d is no step of this match", ErrResume, s.m.id, st.Seq)
	}
	var p replayPos
	if err := json.Unmarshal(st.Journal[len(st.Journal)-1], &p); err != nil || p.Replay.Match != s.m.id || len(st.Journal) != 1 {
		return fmt.Errorf("%w: %s is published by another source (its journal is not this replay's)", ErrResume, s.m.id)
	}
	for g := uint64(0); g < p.Replay.Game; g++ {
		m, err := s.next()
		if err != nil {
			return err
		}
		s.m, s.e = m, newEngine(m)
	}
	for k := 0; k < p.Replay.Step; k++ {
		if s.e.done() {
			return fmt.Errorf("%w: %s: the journal's step %d is past the match's %d", ErrResume, s.m.id, p.Replay.Step, k)
		}
		s.e.step()
	}
	if got, _ := canonJSON(s.e.st.marshal()); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s: the stored state is not this match's at step %d (the file changed?)", ErrResume, s.m.id, p.Replay.Step)
	}
	s.game, s.step = p.Replay.Game, p.Replay.Step
	return nil
}

// done reports whether the play-through is over (its last update was Last).
func (s *Stepper) done() bool { return s.e.done() }

// canonJSON re-encodes a JSON document with sorted keys, for comparisons.
func canonJSON(b []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// IsReplayJournal reports whether a stored journal is a file replay's (Replay), not a
// Live match's.
func IsReplayJournal(journal [][]byte) bool {
	if len(journal) != 1 {
		return false
	}
	var p replayPos
	return json.Unmarshal(journal[0], &p) == nil && p.Replay.Match != ""
}
