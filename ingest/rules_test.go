package ingest

import (
	"encoding/json"
	"strings"
	"testing"

	"crease/bus"
)

func winA(runs int) obj { return obj{"winner": "A", "by": obj{"runs": runs}} }

// aOnly is the outcome of a fixture in which only A bats: a win by runs would need B to
// have batted (and the refusal says so).
var aOnly = obj{"result": "no result"}

// An over with wides, a no-ball hit for four, byes, leg byes and a non-boundary four:
// nine deliveries, six legal balls.
func TestExtrasAndLegalBalls(t *testing.T) {
	o := over(0,
		ext(ball("a1", "a2", "b1", 0), "wides", 1),                                                        // 1wd
		ext(ball("a1", "a2", "b1", 4), "noballs", 1),                                                      // 5nb, a FOUR off a no-ball
		ball("a1", "a2", "b1", 1),                                                                         // 1
		ext(ball("a2", "a1", "b1", 0), "byes", 2),                                                         // 2b
		ext(ball("a2", "a1", "b1", 0), "legbyes", 1),                                                      // 1lb
		ext(ball("a1", "a2", "b1", 0), "wides", 5),                                                        // 5wd: wides that ran to the boundary
		func() obj { d := ball("a1", "a2", "b1", 4); d["runs"].(obj)["non_boundary"] = true; return d }(), // 4 run, not a boundary
		ball("a1", "a2", "b1", 6),
		ball("a1", "a2", "b1", 0),
	)
	m := mustRead(t, "extras.json", doc(aOnly, inns("A", o)))
	us := checkChain(t, m, 1, nil, m.Steps())
	st := final(t, m)
	c := st.Innings["1"]
	wantRuns := 1 + 5 + 1 + 2 + 1 + 5 + 4 + 6 + 0
	if c.Runs != wantRuns || c.Balls != 6 || c.Overs != "1.0" {
		t.Fatalf("innings %d runs %d balls %s overs", c.Runs, c.Balls, c.Overs)
	}
	if c.Extras != (Extras{Total: 1 + 1 + 2 + 1 + 5, Wides: 6, Noballs: 1, Byes: 2, Legbyes: 1}) {
		t.Errorf("extras %+v", c.Extras)
	}
	a1 := c.Batters["a1"]
	// a1 faced: no-ball, 1, [wides excluded], non-boundary 4, 6, 0.
	if *a1 != (BatterCard{Pos: 1, Runs: 4 + 1 + 4 + 6, Balls: 5, Fours: 1, Sixes: 1, Out: "not out"}) {
		t.Errorf("a1 %+v", *a1)
	}
	if a2 := c.Batters["a2"]; a2.Balls != 2 || a2.Runs != 0 {
		t.Errorf("a2 %+v", *a2)
	}
	// The bowler is charged wides and no-balls but not byes and leg byes.
	if b := c.Bowlers["b1"]; b.Balls != 6 || b.Overs != "1.0" || b.Runs != wantRuns-3 || b.Maidens != 0 {
		t.Errorf("b1 %+v", *b)
	}
	var overs []string
	for _, u := range us[2 : 2+9] {
		overs = append(overs, u.Over)
	}
	if got := strings.Join(overs, " "); got != "0.0 0.0 0.1 0.2 0.3 0.3 0.4 0.5 0.6" {
		t.Errorf("overs %s", got)
	}
	var s8 State
	_ = json.Unmarshal(us[2+8].Delta.State, &s8) // after the 9th delivery
	if got := strings.Join(s8.Last6, ","); got != "2b,1lb,5wd,4,6,0" {
		t.Errorf("last6 %s", got)
	}
	if us[2].Text != "b1 to a1, 1 run (wide)" || us[2].Prio != bus.PrioNormal {
		t.Errorf("wide: %q %v", us[2].Text, us[2].Prio)
	}
	if us[3].Text != "b1 to a1, FOUR (no ball)" || us[3].Prio != bus.PrioHigh {
		t.Errorf("no-ball four: %q %v", us[3].Text, us[3].Prio)
	}
	if us[8].Prio != bus.PrioNormal || us[9].Prio != bus.PrioHigh {
		t.Errorf("non-boundary 4 prio %v, six prio %v", us[8].Prio, us[9].Prio)
	}
}

func TestMaidenAndBallsPerOver(t *testing.T) {
	d := doc(aOnly,
		inns("A",
			over(0, dots("a1", "a2", "b1", 5)...),
			over(1, append(dots("a2", "a1", "b2", 4), ext(ball("a2", "a1", "b2", 0), "legbyes", 1))...),
			over(2, append([]obj{ext(ball("a2", "a1", "b1", 0), "wides", 1)}, dots("a2", "a1", "b1", 5)...)...),
			over(3, ball("a1", "a2", "b2", 1), ball("a2", "a1", "b2", 2)),
		))
	d["info"].(obj)["balls_per_over"] = 5
	m := mustRead(t, "five.json", d)
	c := final(t, m).Innings["1"]
	// b1: a clean maiden, then an over with a wide (no maiden). b2: leg byes keep the maiden.
	if b := c.Bowlers["b1"]; b.Maidens != 1 || b.Balls != 10 || b.Overs != "2.0" || b.Runs != 1 {
		t.Errorf("b1 %+v", *b)
	}
	if b := c.Bowlers["b2"]; b.Maidens != 1 || b.Balls != 7 || b.Overs != "1.2" || b.Runs != 3 {
		t.Errorf("b2 %+v", *b)
	}
	if c.Balls != 17 || c.Overs != "3.2" || c.Runs != 5 {
		t.Errorf("innings %d balls %s overs %d runs", c.Balls, c.Overs, c.Runs)
	}
}

func TestPenaltyRuns(t *testing.T) {
	in := inns("A", over(0, ext(ball("a1", "a2", "b1", 1), "penalty", 5), ball("a2", "a1", "b1", 0)))
	in["penalty_runs"] = obj{"pre": 5, "post": 5}
	m := mustRead(t, "pen.json", doc(aOnly, in))
	us := checkChain(t, m, 1, nil, m.Steps())
	var start State
	_ = json.Unmarshal(us[1].Delta.State, &start)
	if start.Score.Runs != 5 || start.Innings["1"].Extras.Penalty != 5 {
		t.Errorf("pre-innings penalty not on the board at the start: %+v", start.Score)
	}
	c := final(t, m).Innings["1"]
	if c.Runs != 5+6+5 || c.Extras.Penalty != 15 || c.Extras.Total != 15 || c.Bowlers["b1"].Runs != 1 {
		t.Errorf("runs %d extras %+v bowler %+v", c.Runs, c.Extras, *c.Bowlers["b1"])
	}
	if us[2].Text != "b1 to a1, 6 runs (5 penalty runs)" {
		t.Errorf("text %q", us[2].Text)
	}
}

// a1 retires hurt and comes back; a2 retires out (a wicket, not the bowler's); the
// non-striker is run out; a batter is timed out; others out in the rarer ways.
func TestDismissalsAndRetirements(t *testing.T) {
	m := mustRead(t, "out.json", doc(aOnly, inns("A",
		over(0,
			out(ball("a1", "a2", "b1", 1), "a1", "retired hurt"),
			ball("a3", "a2", "b1", 0),
			out(ext(ball("a3", "a2", "b1", 0), "legbyes", 1), "a2", "run out", "f1", "f2"), // non-striker's end after the run
			out(ball("a4", "a3", "b1", 0), "a4", "stumped", "wk"),
			out(ball("a5", "a3", "b1", 0), "a6", "timed out"), // a6 never reached the crease
			ball("a5", "a3", "b1", 0),
		),
		over(1,
			out(ball("a3", "a5", "b2", 0), "a3", "retired out"),
			out(ball("a1", "a5", "b2", 0), "a5", "obstructing the field"),
			out(ball("a1", "a7", "b2", 0), "a1", "hit the ball twice"),
			out(ball("a8", "a7", "b2", 0), "a7", "handled the ball"),
			out(ext(ball("a8", "a9", "b2", 0), "wides", 1), "a8", "hit wicket"),
			out(ball("a9", "a10", "b2", 0), "a9", "caught and bowled"),
		),
	)))
	us := checkChain(t, m, 1, nil, m.Steps())
	c := final(t, m).Innings["1"]
	wantOut := map[string]string{
		"a1": "hit the ball twice", "a2": "run out (f1/f2)", "a3": "retired out", "a4": "st wk b b1",
		"a5": "obstructing the field", "a6": "timed out", "a7": "handled the ball", "a8": "hit wicket b b2",
		"a9": "c & b b2", "a10": "not out",
	}
	for name, want := range wantOut {
		if b := c.Batters[name]; b == nil || b.Out != want {
			t.Errorf("%s: %+v, want %q", name, b, want)
		}
	}
	if c.Wickets != 9 || len(c.FOW) != 9 {
		t.Errorf("wickets %d fow %d", c.Wickets, len(c.FOW))
	}
	if c.Bowlers["b1"].Wickets != 1 || c.Bowlers["b2"].Wickets != 2 {
		t.Errorf("bowler wickets b1 %d b2 %d", c.Bowlers["b1"].Wickets, c.Bowlers["b2"].Wickets)
	}
	// While a1 was off retired hurt, the card said so, and nothing fell.
	var s State
	_ = json.Unmarshal(us[2].Delta.State, &s)
	if s.Innings["1"].Batters["a1"].Out != "retired hurt" || s.Score.Wickets != 0 || s.Striker != "a3" || us[2].Prio != bus.PrioHigh {
		t.Errorf("after retiring: %+v striker %q", s.Innings["1"].Batters["a1"], s.Striker)
	}
	if s.Partnership != (Partnership{}) {
		t.Errorf("partnership %+v after a retirement", s.Partnership)
	}
	_ = json.Unmarshal(us[4].Delta.State, &s)
	if f := s.Innings["1"].FOW[0]; f != (FallOfWicket{Wicket: 1, Runs: 2, Over: "0.3", Player: "a2"}) {
		t.Errorf("fow %+v", f)
	}
	if s.Last6[len(s.Last6)-1] != "1lbW" || s.Striker != "a4" || s.NonStriker != "a3" {
		t.Errorf("after the run out: last6 %v, striker %q, non-striker %q", s.Last6, s.Striker, s.NonStriker)
	}
	// a1 back after retiring hurt.
	_ = json.Unmarshal(us[9].Delta.State, &s)
	if s.Innings["1"].Batters["a1"].Out != "not out" || s.Innings["1"].Batters["a1"].Pos != 1 {
		t.Errorf("a1 back: %+v", s.Innings["1"].Batters["a1"])
	}
	if !strings.Contains(us[4].Text, "OUT! a2 run out (f1/f2)") {
		t.Errorf("text %q", us[4].Text)
	}
}

// The Cricsheet shape of a tie: two super overs, the second deciding.
func TestSuperOverTie(t *testing.T) {
	d := doc(obj{"result": "tie", "eliminator": "B"},
		inns("A", over(0, ball("a1", "a2", "b1", 6), ball("a1", "a2", "b1", 4))),
		inns("B", over(0, ball("b1", "b2", "a1", 6), ball("b1", "b2", "a1", 4))),
		superOver("B", "b1", "b2", "a1", 4, 4),
		superOver("A", "a1", "a2", "b1", 6, 2),
		superOver("A", "a1", "a2", "b1", 1),
		superOver("B", "b1", "b2", "a1", 2),
	)
	m := mustRead(t, "tie.json", d)
	us := checkChain(t, m, 1, nil, m.Steps()+3)
	st := final(t, m)
	if st.Result != "Match tied (B won the super over)" || st.Winner != "B" || len(st.Innings) != 6 {
		t.Fatalf("result %q winner %q innings %d", st.Result, st.Winner, len(st.Innings))
	}
	for k, want := range map[string]bool{"1": false, "2": false, "3": true, "4": true, "5": true, "6": true} {
		if st.Innings[k].SuperOver != want {
			t.Errorf("innings %s super_over %v", k, st.Innings[k].SuperOver)
		}
	}
	// Targets: 11 in innings 2 (20 overs), 9 in the first super over chase, 2 in the second.
	targets := map[int]int{}
	balls := map[int]int{}
	for _, u := range us {
		var s State
		_ = json.Unmarshal(u.Delta.State, &s)
		if s.Status == StatusLive && s.Over == "0.0" {
			targets[s.Inn] = s.Target
			if s.Need != nil && s.Need.Balls != nil {
				balls[s.Inn] = *s.Need.Balls
			}
		}
	}
	if targets[1] != 0 || targets[2] != 11 || targets[3] != 0 || targets[4] != 9 || targets[5] != 0 || targets[6] != 2 {
		t.Errorf("targets %v", targets)
	}
	if balls[2] != 120 || balls[4] != 6 || balls[6] != 6 {
		t.Errorf("balls to chase %v", balls)
	}
	// The last delta wins the match in the second super over: target reached is high.
	last := us[m.Steps()-2]
	if !strings.HasSuffix(last.Text, "target reached") || last.Prio != bus.PrioHigh {
		t.Errorf("winning ball %q %v", last.Text, last.Prio)
	}
	// After the result the stepper starts over: one delta resets to the scheduled state.
	rs := us[m.Steps()]
	var s State
	_ = json.Unmarshal(rs.Delta.State, &s)
	if !rs.Restart || s.Status != StatusScheduled || len(s.Innings) != 0 || s.Result != "" || rs.Delta.Seq != uint64(m.Steps()+1) {
		t.Errorf("restart: %+v %s", rs, rs.Delta.State)
	}
}

func TestResultTexts(t *testing.T) {
	two := []obj{
		inns("A", over(0, ball("a1", "a2", "b1", 1))),
		inns("B", over(0, ball("b1", "b2", "a1", 0))),
	}
	cases := []struct {
		outcome      obj
		result, winr string
	}{
		{obj{"winner": "A", "by": obj{"runs": 1}}, "A won by 1 run", "A"},
		{obj{"winner": "B", "by": obj{"wickets": 1}}, "B won by 1 wicket", "B"},
		{obj{"winner": "A", "by": obj{"runs": 12}, "method": "D/L"}, "A won by 12 runs (D/L method)", "A"},
		{obj{"winner": "A", "by": obj{"innings": 1, "runs": 50}}, "A won by an innings and 50 runs", "A"},
		{obj{"result": "no result"}, "No result", ""},
		{obj{"result": "draw"}, "Match drawn", ""},
		{obj{"result": "tie"}, "Match tied", ""},
		{obj{"result": "tie", "bowl_out": "B"}, "Match tied (B won the bowl-out)", "B"},
		{obj{"winner": "B", "method": "Awarded"}, "B won (Awarded method)", "B"},
	}
	for _, c := range cases {
		m := mustRead(t, "r.json", doc(c.outcome, two...))
		if st := final(t, m); st.Result != c.result || st.Winner != c.winr {
			t.Errorf("%v: %q %q, want %q %q", c.outcome, st.Result, st.Winner, c.result, c.winr)
		}
	}
	// No play at all: scheduled, then the result.
	m := mustRead(t, "abandoned.json", doc(obj{"result": "no result"}))
	us := checkChain(t, m, 1, nil, 2)
	if !us[1].Last || !strings.Contains(string(us[1].Delta.State), `"status":"finished"`) {
		t.Errorf("abandoned: %s", us[1].Delta.State)
	}
}

// A D/L chase: the file's target (runs and overs) wins over the first innings' score.
func TestRevisedTarget(t *testing.T) {
	in2 := inns("B", over(0, ball("b1", "b2", "a1", 4)))
	in2["target"] = obj{"runs": 50, "overs": 5.3}
	m := mustRead(t, "dl.json", doc(obj{"winner": "A", "by": obj{"runs": 10}, "method": "D/L"},
		inns("A", over(0, ball("a1", "a2", "b1", 6))), in2))
	us := checkChain(t, m, 1, nil, m.Steps())
	var st State
	if err := json.Unmarshal(us[len(us)-2].Delta.State, &st); err != nil { // after the last ball
		t.Fatal(err)
	}
	if st.Target != 50 || st.Need.Runs != 46 || *st.Need.Balls != 33-1 || *st.RRR != 8.63 {
		t.Errorf("target %d need %+v balls %d rrr %v", st.Target, st.Need, *st.Need.Balls, *st.RRR)
	}
	fin := final(t, m)
	if c := fin.Innings["2"]; c.Target != 50 || c.MaxOvers != "5.3" || fin.Need != nil || fin.RRR != nil || fin.Method != "D/L" {
		t.Errorf("final: card target %d max overs %q, need %+v rrr %v, method %q", c.Target, c.MaxOvers, fin.Need, fin.RRR, fin.Method)
	}
}

func TestMilestonesAndReplacements(t *testing.T) {
	var ds []obj
	for range 8 {
		ds = append(ds, ball("a1", "a2", "b1", 6))
	}
	ds = append(ds, ball("a1", "a2", "b1", 1), ball("a1", "a2", "b1", 1)) // 49, then a single to 50
	ds[0]["replacements"] = obj{"match": []any{obj{"in": "x", "out": "y", "team": "B", "reason": "impact_player"}}}
	m := mustRead(t, "ms.json", doc(aOnly, inns("A", over(0, ds[:6]...), over(1, ds[6:]...))))
	us := checkChain(t, m, 1, nil, m.Steps())
	if !strings.Contains(us[2].Text, "x in for y (impact player)") {
		t.Errorf("replacement text %q", us[2].Text)
	}
	u49, u50 := us[2+8], us[2+9]
	if u49.Prio != bus.PrioNormal || strings.Contains(u49.Text, "reaches") {
		t.Errorf("49: %q %v", u49.Text, u49.Prio)
	}
	if u50.Prio != bus.PrioHigh || u50.Text != "b1 to a1, 1 run; a1 reaches 50 off 10 balls" {
		t.Errorf("50: %q %v", u50.Text, u50.Prio)
	}
}
