package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// liveMatch is a live match of info for the tests of impossible input.
type liveMatch struct {
	t *testing.T
	l *Live
}

func newLiveMatch(t *testing.T, info string) *liveMatch {
	t.Helper()
	l, err := NewLive("m1", json.RawMessage(info))
	if err != nil {
		t.Fatal(err)
	}
	return &liveMatch{t: t, l: l}
}

// dlv is a delivery of runs off the bat, with more JSON members (",..." or "").
func dlv(bat, ns, bowl string, runs int, more string) string {
	return fmt.Sprintf(`{"batter":%q,"non_striker":%q,"bowler":%q,"runs":{"batter":%d,"extras":0,"total":%d}%s}`, bat, ns, bowl, runs, runs, more)
}

// post posts a ball and returns the refusal, if any.
func (m *liveMatch) post(inn int, team string, super bool, over, ball int, d string) error {
	m.t.Helper()
	body := fmt.Sprintf(`{"innings":%d,"team":%q,"super_over":%v,"over":%d,"ball":%d,"delivery":%s}`, inn, team, super, over, ball, d)
	p, err := DecodeBall([]byte(body))
	if err == nil {
		_, _, _, _, err = m.l.Ball(p, 0)
	}
	return err
}

func (m *liveMatch) ok(inn int, team string, super bool, over, ball int, d string) {
	m.t.Helper()
	if err := m.post(inn, team, super, over, ball, d); err != nil {
		m.t.Fatalf("innings %d over %d ball %d: %v", inn, over, ball, err)
	}
}

// impossible fails unless err is ErrImpossible with want in its message.
func impossible(t *testing.T, what string, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrImpossible) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want impossible with %q", what, err, want)
	}
}

const t20 = `{"teams":["Lions","Tigers"],"match_type":"T20","overs":2}`

var overString = regexp.MustCompile(`^[0-9]+\.[0-9]$`) // schema/state.schema.json $defs.overs

// An over holds bpo legal balls, bpo+1 when the umpire miscounts; never more, so the
// over string stays "over.ball".
func TestLegalBallsPerOver(t *testing.T) {
	m := newLiveMatch(t, t20)
	for b := 1; b <= 7; b++ {
		m.ok(1, "Lions", false, 0, b, dlv("l1", "l2", "t1", 0, ""))
	}
	if st := m.l.State(); st.Over != "0.7" || !overString.MatchString(st.Innings["1"].Overs) {
		t.Fatalf("after 7 legal balls: over %q, card %q", st.Over, st.Innings["1"].Overs)
	}
	// A wide is not a legal ball: it may follow.
	m.ok(1, "Lions", false, 0, 8, `{"batter":"l1","non_striker":"l2","bowler":"t1","runs":{"batter":0,"extras":1,"total":1},"extras":{"wides":1}}`)
	impossible(t, "legal ball 8", m.post(1, "Lions", false, 0, 9, dlv("l1", "l2", "t1", 1, "")), "legal ball 8 of over 0: an over has 6 legal balls (7 when the umpire miscounts)")
	if st := m.l.State(); st.Over != "0.7" {
		t.Fatalf("a refused ball changed the over: %q", st.Over)
	}
	// The same bound refuses a match file, and five-ball overs have theirs.
	var ds []obj
	for range 7 {
		ds = append(ds, ball("a1", "a2", "b1", 0))
	}
	d := doc(aOnly, inns("A", over(0, ds...)))
	d["info"].(obj)["balls_per_over"] = 5
	_, err := ReadMatch("five.json", mustJSON(t, d))
	if err == nil || !strings.Contains(err.Error(), "innings 1, over 0, ball 7: legal ball 7 of over 0: an over has 5 legal balls (6 when the umpire miscounts)") {
		t.Errorf("a 7-ball over of five: %v", err)
	}
	// The bound keeps one digit: more than 8 balls per over is refused.
	if _, err := NewLive("m2", json.RawMessage(`{"teams":["A","B"],"balls_per_over":9}`)); !errors.Is(err, ErrImpossible) || !strings.Contains(err.Error(), "info.balls_per_over 9 is out of range 1..8") {
		t.Errorf("9 balls per over: %v", err)
	}
}

// The innings a format allows: two, then super overs, in a limited-overs match; four and
// no super over in a Test; nothing after a chase reached its target.
func TestInningsTheFormatAllows(t *testing.T) {
	t.Run("after a won chase", func(t *testing.T) {
		m := newLiveMatch(t, t20)
		m.ok(1, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 1, ""))
		m.ok(2, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 2, ""))
		impossible(t, "innings 3", m.post(3, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 0, "")), "innings 3 after innings 2 reached its target of 2: the match was won")
		impossible(t, "a super over", m.post(3, "Lions", true, 0, 1, dlv("l1", "l2", "t1", 0, "")), "reached its target")
	})
	t.Run("a third innings of a T20", func(t *testing.T) {
		m := newLiveMatch(t, t20)
		m.ok(1, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 4, ""))
		m.ok(2, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 0, ""))
		impossible(t, "innings 3", m.post(3, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 0, "")), "a third innings in a limited-overs match (2 overs)")
	})
	t.Run("super overs", func(t *testing.T) {
		m := newLiveMatch(t, t20)
		impossible(t, "a super over first", m.post(1, "Lions", true, 0, 1, dlv("l1", "l2", "t1", 0, "")), "a super over as innings 1")
		m.ok(1, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 1, ""))
		m.ok(2, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 1, "")) // level
		m.ok(3, "Tigers", true, 0, 1, dlv("t1", "t2", "l1", 1, ""))
		impossible(t, "a regular innings after a super over", m.post(4, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 0, "")), "innings 4 is not a super over, but a super over was played")
		m.ok(4, "Lions", true, 0, 1, dlv("l1", "l2", "t1", 1, "")) // level again
		m.ok(5, "Tigers", true, 0, 1, dlv("t1", "t2", "l1", 0, ""))
	})
	t.Run("a Test", func(t *testing.T) {
		m := newLiveMatch(t, `{"teams":["Lions","Tigers"],"match_type":"Test"}`)
		for i, team := range []string{"Lions", "Tigers", "Tigers", "Lions"} {
			if i == 2 {
				impossible(t, "a super over in a Test", m.post(3, "Lions", true, 0, 1, dlv("l1", "l2", "t1", 0, "")), "a super over in a Test match")
			}
			m.ok(i+1, team, false, 0, 1, dlv(team+"1", team+"2", "x", 0, ""))
		}
		impossible(t, "innings 5", m.post(5, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 0, "")), "a fifth innings: a match has at most four")
	})
	t.Run("a file", func(t *testing.T) {
		_, err := ReadMatch("three.json", mustJSON(t, doc(obj{"winner": "B", "by": obj{"wickets": 10}},
			inns("A", over(0, ball("a1", "a2", "b1", 1))), inns("B", over(0, ball("b1", "b2", "a1", 2))), inns("A", over(0, ball("a1", "a2", "b1", 1))))))
		if err == nil || !strings.Contains(err.Error(), "three.json: innings 3: innings 3 after innings 2 reached its target of 2") {
			t.Errorf("a third innings in a file: %v", err)
		}
	})
}

// An outcome that contradicts the innings is refused; so is an info without outcome once
// the match has its result (a correction of the outcome is not).
func TestOutcomeMatchesTheInnings(t *testing.T) {
	m := newLiveMatch(t, t20)
	m.ok(1, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 1, ""))
	withOutcome := func(o string) json.RawMessage {
		return json.RawMessage(`{"teams":["Lions","Tigers"],"match_type":"T20","overs":2,"outcome":` + o + `}`)
	}
	impossible(t, "by wickets, never batted", m.l.SetInfo(withOutcome(`{"winner":"Tigers","by":{"wickets":10}}`)), "info.outcome: Tigers won by 10 wickets, but Lions batted last")
	impossible(t, "by runs, batted last", m.l.SetInfo(withOutcome(`{"winner":"Lions","by":{"runs":1}}`)), "info.outcome: Lions won by 1 run, but batted last")
	if m.l.Finished() {
		t.Fatal("a refused outcome finished the match")
	}
	m.ok(2, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 0, `,"wickets":[{"kind":"bowled","player_out":"t1"}]`))
	m.ok(2, "Tigers", false, 0, 2, dlv("t3", "t2", "l1", 2, ""))
	impossible(t, "more wickets in hand than left", m.l.SetInfo(withOutcome(`{"winner":"Tigers","by":{"wickets":10}}`)), "lost 1 in the last innings (at most 9 left)")
	impossible(t, "by runs, chased", m.l.SetInfo(withOutcome(`{"winner":"Tigers","by":{"runs":5}}`)), "Tigers won by 5 runs, but batted last")
	if err := m.l.SetInfo(withOutcome(`{"winner":"Tigers","by":{"wickets":9}}`)); err != nil {
		t.Fatal(err)
	}
	// A correction of the outcome is fine; removing it is not.
	if err := m.l.SetInfo(withOutcome(`{"result":"no result"}`)); err != nil {
		t.Fatal(err)
	}
	impossible(t, "no outcome after the result", m.l.SetInfo(json.RawMessage(t20)), "the match has its result; an info without outcome cannot set it live again")
	if st := m.l.State(); !m.l.Finished() || st.Status != StatusFinished {
		t.Fatalf("status %q after a refused info", st.Status)
	}
	// A journal written before the refusal existed still rebuilds.
	j := append(append([][]byte(nil), m.l.Journal()...), mustEntry(journalEntry{Info: json.RawMessage(t20)}))
	r, err := NewLiveFromJournal("m1", j)
	if err != nil || r.Finished() {
		t.Fatalf("old journal: %v, finished %v", err, r != nil && r.Finished())
	}
	// A file's outcome is checked too.
	_, err = ReadMatch("o.json", mustJSON(t, doc(obj{"winner": "A", "by": obj{"wickets": 3}},
		inns("A", over(0, ball("a1", "a2", "b1", 1))), inns("B", over(0, ball("b1", "b2", "a1", 0))))))
	if err == nil || !strings.Contains(err.Error(), "o.json: info.outcome: A won by 3 wickets, but B batted last") {
		t.Errorf("a file: %v", err)
	}
}

// A result by a method is not checked against the innings: under D/L a chasing side
// ahead of par when play is called off wins "by runs" (Sri Lanka v New Zealand,
// Pallekele 2012, by 14 runs).
func TestOutcomeByAMethodIsNotChecked(t *testing.T) {
	m := newLiveMatch(t, t20)
	m.ok(1, "Lions", false, 0, 1, dlv("l1", "l2", "t1", 4, ""))
	m.ok(2, "Tigers", false, 0, 1, dlv("t1", "t2", "l1", 6, ""))
	dl := `{"teams":["Lions","Tigers"],"match_type":"T20","overs":2,"outcome":{"winner":"Tigers","by":{"runs":14},"method":"D/L"}}`
	if err := m.l.SetInfo(json.RawMessage(dl)); err != nil {
		t.Fatalf("a D/L win by runs of the chasing side: %v", err)
	}
	if !m.l.Finished() {
		t.Fatal("not finished")
	}
}

// A journal the store holds rebuilds even when a rule added since would refuse one of
// its entries (here an eighth legal ball in one over, past the miscount bound, which the
// store took before the bound existed); the rebuilt match then goes on under every rule.
func TestStoredJournalRebuildsUnderNewRules(t *testing.T) {
	m := newLiveMatch(t, t20)
	var j [][]byte
	j = append(j, m.l.Journal()[0])
	for b := 1; b <= 8; b++ { // 8 legal balls in over 0: past bpo+1
		j = append(j, mustEntry(journalEntry{Ball: json.RawMessage(fmt.Sprintf(`{"innings":1,"team":"Lions","over":0,"ball":%d,"delivery":%s}`, b, dlv("l1", "l2", "t1", 1, ""))), Seq: uint64(b + 1)}))
	}
	r, err := NewLiveFromJournal("m1", j)
	if err != nil {
		t.Fatalf("a stored journal no longer rebuilds: %v", err)
	}
	if r.Balls() != 8 {
		t.Fatalf("%d balls rebuilt, want 8", r.Balls())
	}
	// From now on the rules hold: a ninth legal ball of the over is refused.
	p, err := DecodeBall([]byte(`{"innings":1,"team":"Lions","over":0,"ball":9,"delivery":` + dlv("l1", "l2", "t1", 1, "") + `}`))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, _, err = r.Ball(p, 10)
	impossible(t, "a ball past the bound after a rebuild", err, "an over has 6 legal balls")
}

// At most one dismissal in play per delivery, and the runs of one ball are bounded.
func TestOneDeliveryBounds(t *testing.T) {
	cases := []struct {
		name, d, want string // want "": accepted
	}{
		{"two run outs", dlv("a1", "a2", "b1", 1, `,"wickets":[{"kind":"run out","player_out":"a1"},{"kind":"run out","player_out":"a2"}]`),
			`two dismissals in play on one delivery (run out of "a1" and run out of "a2")`},
		{"caught and run out", dlv("a1", "a2", "b1", 0, `,"wickets":[{"kind":"caught","player_out":"a1"},{"kind":"run out","player_out":"a2"}]`), "two dismissals in play"},
		{"run out and retired hurt", dlv("a1", "a2", "b1", 1, `,"wickets":[{"kind":"run out","player_out":"a1"},{"kind":"retired hurt","player_out":"a2"}]`), ""},
		{"caught and timed out", dlv("a1", "a2", "b1", 0, `,"wickets":[{"kind":"caught","player_out":"a1"},{"kind":"timed out","player_out":"a3"}]`), ""},
		{"9 off the bat", dlv("a1", "a2", "b1", 9, ""), "runs.batter 9 is more than 8 (runs off the bat on one ball: all run plus overthrows)"},
		{"8 off the bat", dlv("a1", "a2", "b1", 8, ""), ""},
		{"11 wides", `{"batter":"a1","non_striker":"a2","bowler":"b1","runs":{"batter":0,"extras":11,"total":11},"extras":{"wides":11}}`, "extras.wides 11 is more than 10"},
		{"15 penalty", `{"batter":"a1","non_striker":"a2","bowler":"b1","runs":{"batter":0,"extras":15,"total":15},"extras":{"penalty":15}}`, "extras.penalty 15 is more than 10"},
		{"5 wides", `{"batter":"a1","non_striker":"a2","bowler":"b1","runs":{"batter":0,"extras":5,"total":5},"extras":{"wides":5}}`, ""},
	}
	for _, c := range cases {
		m := newLiveMatch(t, `{"teams":["A","B"],"match_type":"T20"}`)
		m.ok(1, "A", false, 0, 1, dlv("a1", "a2", "b1", 0, ""))
		err := m.post(1, "A", false, 0, 2, c.d)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		impossible(t, c.name, err, c.want)
	}
}
