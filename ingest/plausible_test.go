package ingest

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// Files that decode fine but describe impossible cricket are refused, naming the place.
func TestReadMatchRefusesImpossibleCricket(t *testing.T) {
	allOut := func(team, bowler string, n int) obj { // n batters out, one per ball, in over 0..
		var overs []obj
		var ds []obj
		for i := range n {
			ds = append(ds, out(ball(team+itoa(i+1), team+"x", bowler, 0), team+itoa(i+1), "bowled"))
			if len(ds) == 6 {
				overs = append(overs, over(len(overs), ds...))
				ds = nil
			}
		}
		if len(ds) > 0 {
			overs = append(overs, over(len(overs), ds...))
		}
		return inns(team, overs...)
	}
	twentyOne := func() obj {
		var overs []obj
		for o := range 21 {
			overs = append(overs, over(o, dots("a1", "a2", "b"+itoa(o%5+1), 6)...))
		}
		return inns("A", overs...)
	}
	cases := []struct {
		name string
		doc  obj
		want string
	}{
		{"200-over T20", func() obj {
			d := doc(winA(1), inns("A", over(0, ball("a1", "a2", "b1", 4))))
			d["info"].(obj)["overs"] = 200
			return d
		}(), "info.overs 200 is more than a T20 has (20)"},
		{"21-over innings", doc(winA(1), twentyOne()), "innings 1, over 20, ball 1: over 20 is past the innings' 20.0 overs"},
		{"eleventh wicket", doc(winA(1), allOut("A", "b1", 11)), "innings 1, over 1, ball 5: a delivery after the innings was all out (10 wickets)"},
		{"three wickets in a super over", func() obj {
			so := allOut("B", "a1", 3)
			so["super_over"] = true
			return doc(obj{"result": "tie", "eliminator": "A"},
				inns("A", over(0, ball("a1", "a2", "b1", 1))), inns("B", over(0, ball("b1", "b2", "a1", 1))), so)
		}(), "innings 3, over 0, ball 3: a delivery after the innings was all out (2 wickets)"},
		{"a chase past its target", doc(obj{"winner": "B", "by": obj{"wickets": 10}},
			inns("A", over(0, ball("a1", "a2", "b1", 1))),
			inns("B", over(0, ball("b1", "b2", "a1", 2), ball("b1", "b2", "a1", 1)))),
			"innings 2, over 0, ball 2: a delivery after the target of 2 was reached"},
		{"an innings without overs", doc(winA(1), obj{"team": "A"}), "innings 1: an innings without overs that is not forfeited"},
		{"negative runs", doc(winA(1), inns("A", over(0, ball("a1", "a2", "b1", -4)))), "runs.batter -4 is negative"},
	}
	for _, c := range cases {
		_, err := ReadMatch("x.json", mustJSON(t, c.doc))
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalidMatch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A forfeited innings without overs is fine.
	f := obj{"team": "A", "forfeited": true}
	if _, err := ReadMatch("f.json", mustJSON(t, doc(obj{"winner": "B", "by": obj{"wickets": 10}}, f, inns("B", over(0, ball("b1", "b2", "a1", 1)))))); err != nil {
		t.Errorf("forfeited innings: %v", err)
	}
}

// The scorecard items a fan expects: player of the match, each innings' target kept,
// the overs limit, "scores level — super over", bowlers' wides and no-balls, did not bat.
func TestScorecardItems(t *testing.T) {
	d := doc(obj{"result": "tie", "eliminator": "B"},
		inns("A", over(0, ext(ball("a1", "a2", "b1", 0), "wides", 5), ext(ball("a1", "a2", "b1", 1), "noballs", 1), ball("a1", "a2", "b1", 4))),
		inns("B", over(0, ball("b1", "b2", "a1", 6), ball("b1", "b2", "a1", 4), ball("b1", "b2", "a1", 1))),
		superOver("B", "b1", "b2", "a1", 4),
		superOver("A", "a1", "a2", "b1", 6),
	)
	info := d["info"].(obj)
	info["player_of_match"] = []any{"b1"}
	info["players"] = obj{"A": []any{"a1", "a2", "a3", "a4"}, "B": []any{"b1", "b2", "b3"}}
	m := mustRead(t, "tie.json", d)
	us := checkChain(t, m, 1, nil, m.Steps())
	var brk State
	for _, u := range us {
		var s State
		if err := json.Unmarshal(u.Delta.State, &s); err != nil {
			t.Fatal(err)
		}
		if s.OversLimit != 20 {
			t.Fatalf("seq %d: overs_limit %d", u.Delta.Seq, s.OversLimit)
		}
		if s.Status == StatusInningsBreak && s.Inn == 2 {
			brk = s
			if !strings.Contains(u.Text, "Scores level — super over") {
				t.Errorf("break commentary %q", u.Text)
			}
		}
		if s.Status != StatusFinished && len(s.PlayerOfMatch) > 0 {
			t.Errorf("seq %d: player of the match before the result", u.Delta.Seq)
		}
	}
	if brk.Note != "Scores level — super over" || brk.Need != nil || brk.Target != 12 || brk.Innings["2"].Target != 12 {
		t.Errorf("break after the tie: note %q need %+v target %d card target %d", brk.Note, brk.Need, brk.Target, brk.Innings["2"].Target)
	}
	fin := final(t, m)
	if !slices.Equal(fin.PlayerOfMatch, []string{"b1"}) || fin.Note != "" {
		t.Errorf("final: player of the match %v note %q", fin.PlayerOfMatch, fin.Note)
	}
	if c := fin.Innings["2"]; c.Target != 12 {
		t.Errorf("innings 2 target %d after it ended", c.Target)
	}
	if bw := fin.Innings["1"].Bowlers["b1"]; bw.Wides != 5 || bw.Noballs != 1 || bw.Runs != 11 {
		t.Errorf("bowler b1 %+v", bw)
	}
	if dnb := fin.Innings["1"].DidNotBat; !slices.Equal(dnb, []string{"a3", "a4"}) {
		t.Errorf("did not bat %v", dnb)
	}
	if dnb := fin.Innings["3"].DidNotBat; !slices.Equal(dnb, []string{"b3"}) {
		t.Errorf("super over did not bat %v", dnb)
	}
}

func TestCaughtByTheBowlerIsCAndB(t *testing.T) {
	m := mustRead(t, "cb.json", doc(aOnly, inns("A", over(0, out(ball("a1", "a2", "b1", 0), "a1", "caught", "b1"), ball("a3", "a2", "b1", 1)))))
	if got := final(t, m).Innings["1"].Batters["a1"].Out; got != "c & b b1" {
		t.Errorf("caught by the bowler: %q", got)
	}
}
