package ingest

import (
	"testing"
)

// The official scorecards of the embedded matches (ESPNcricinfo), which the files'
// deliveries must reproduce.
func TestEmbeddedMatchesMatchOfficialScorecards(t *testing.T) {
	ms, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Match{}
	for _, m := range ms {
		byID[m.ID()] = m
	}
	if len(byID) != 3 {
		t.Fatalf("embedded matches %v, want 3", len(byID))
	}
	type inn struct {
		team       string
		runs, wkts int
		overs      string
		extras     int
		superOver  bool
		fowLast    string // "runs/over" of the last wicket, "" for none
	}
	type bat struct {
		inn, runs, balls, fours, sixes int
		out                            string
	}
	type bowl struct {
		inn, balls, runs, wkts int
	}
	cases := []struct {
		id, title, event, date, toss string
		result, winner               string
		innings                      []inn
		batters                      map[string]bat
		bowlers                      map[string]bowl
	}{
		{
			id: "1298150", title: "Pakistan v India", event: "ICC Men's T20 World Cup 2022, match 16",
			date: "2022-10-23", toss: "India won the toss and chose to field",
			result: "India won by 4 wickets", winner: "India",
			innings: []inn{
				{team: "Pakistan", runs: 159, wkts: 8, overs: "20.0", extras: 12, fowLast: "151/19.2"},
				{team: "India", runs: 160, wkts: 6, overs: "20.0", extras: 11, fowLast: "158/19.5"},
			},
			batters: map[string]bat{
				"V Kohli":        {2, 82, 53, 6, 4, "not out"},
				"HH Pandya":      {2, 40, 37, 1, 2, "c Babar Azam b Mohammad Nawaz"},
				"Shan Masood":    {1, 52, 42, 5, 0, "not out"},
				"Iftikhar Ahmed": {1, 51, 34, 2, 4, "lbw b Mohammed Shami"},
				"Babar Azam":     {1, 0, 1, 0, 0, "lbw b Arshdeep Singh"},
				"AR Patel":       {2, 2, 3, 0, 0, "run out (Mohammad Rizwan/Babar Azam)"},
				"KD Karthik":     {2, 1, 2, 0, 0, "st Mohammad Rizwan b Mohammad Nawaz"},
			},
			bowlers: map[string]bowl{
				"Arshdeep Singh": {1, 24, 32, 3},
				"HH Pandya":      {1, 24, 30, 3},
				"Mohammad Nawaz": {2, 24, 42, 2},
				"Haris Rauf":     {2, 24, 36, 2},
			},
		},
		{
			id: "1359539", title: "Sunrisers Hyderabad v Royal Challengers Bangalore",
			event: "Indian Premier League 2023, match 65", date: "2023-05-18",
			toss:   "Royal Challengers Bangalore won the toss and chose to field",
			result: "Royal Challengers Bangalore won by 8 wickets", winner: "Royal Challengers Bangalore",
			innings: []inn{
				{team: "Sunrisers Hyderabad", runs: 186, wkts: 5, overs: "20.0", extras: 6, fowLast: "186/19.6"},
				{team: "Royal Challengers Bangalore", runs: 187, wkts: 2, overs: "19.2", extras: 7, fowLast: "177/18.2"},
			},
			batters: map[string]bat{
				"V Kohli":   {2, 100, 63, 12, 4, "c GD Phillips b B Kumar"},
				"H Klaasen": {1, 104, 51, 8, 6, "b HV Patel"},
			},
			bowlers: map[string]bowl{
				"MG Bracewell": {1, 12, 13, 2},
				"Kartik Tyagi": {2, 8, 21, 0},
			},
		},
		{
			id: "335982", title: "Royal Challengers Bangalore v Kolkata Knight Riders",
			event: "Indian Premier League 2008, match 1", date: "2008-04-18",
			toss:   "Royal Challengers Bangalore won the toss and chose to field",
			result: "Kolkata Knight Riders won by 140 runs", winner: "Kolkata Knight Riders",
			innings: []inn{
				{team: "Kolkata Knight Riders", runs: 222, wkts: 3, overs: "20.0", extras: 17, fowLast: "172/17.1"},
				{team: "Royal Challengers Bangalore", runs: 82, wkts: 10, overs: "15.1", extras: 19, fowLast: "82/15.1"},
			},
			batters: map[string]bat{
				"BB McCullum": {1, 158, 73, 10, 13, "not out"},
				"P Kumar":     {2, 18, 15, 1, 2, "not out"},
				"V Kohli":     {2, 1, 5, 0, 0, "b AB Dinda"},
			},
			bowlers: map[string]bowl{
				"AB Agarkar": {2, 24, 25, 3},
				"LR Shukla":  {2, 7, 12, 1},
				"I Sharma":   {2, 18, 7, 1},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			m := byID[c.id]
			if m == nil {
				t.Fatalf("%s not embedded", c.id)
			}
			st := final(t, m)
			if st.Title != c.title || st.Event != c.event || st.Date != c.date || st.Toss != c.toss {
				t.Errorf("header %q %q %q %q", st.Title, st.Event, st.Date, st.Toss)
			}
			if st.Status != StatusFinished || st.Result != c.result || st.Winner != c.winner {
				t.Errorf("status %q result %q winner %q", st.Status, st.Result, st.Winner)
			}
			if len(st.Innings) != len(c.innings) || st.Inn != len(c.innings) {
				t.Fatalf("%d innings, inn %d", len(st.Innings), st.Inn)
			}
			for i, want := range c.innings {
				got := st.Innings[itoa(i+1)]
				if got.Team != want.team || got.Runs != want.runs || got.Wickets != want.wkts || got.Overs != want.overs ||
					got.Extras.Total != want.extras || got.SuperOver != want.superOver {
					t.Errorf("innings %d: %s %d/%d (%s ov) extras %d, want %+v", i+1, got.Team, got.Runs, got.Wickets, got.Overs, got.Extras.Total, want)
				}
				x := got.Extras
				if x.Total != x.Wides+x.Noballs+x.Byes+x.Legbyes+x.Penalty {
					t.Errorf("innings %d: extras %+v do not add up", i+1, x)
				}
				if len(got.FOW) != want.wkts {
					t.Errorf("innings %d: %d fall of wickets for %d wickets", i+1, len(got.FOW), want.wkts)
				}
				if n := len(got.FOW); n > 0 {
					f := got.FOW[n-1]
					if s := itoa(f.Runs) + "/" + f.Over; s != want.fowLast || f.Wicket != n {
						t.Errorf("innings %d: last wicket %+v, want %s", i+1, f, want.fowLast)
					}
				}
				batRuns, bowlRuns, bowlBalls := 0, 0, 0
				for _, b := range got.Batters {
					batRuns += b.Runs
				}
				for _, b := range got.Bowlers {
					bowlRuns += b.Runs
					bowlBalls += b.Balls
				}
				if batRuns+x.Total != got.Runs {
					t.Errorf("innings %d: batters %d + extras %d != %d", i+1, batRuns, x.Total, got.Runs)
				}
				if bowlRuns+x.Byes+x.Legbyes+x.Penalty != got.Runs || bowlBalls != got.Balls {
					t.Errorf("innings %d: bowlers' %d runs, %d balls do not add up to %d, %d", i+1, bowlRuns, bowlBalls, got.Runs, got.Balls)
				}
			}
			last := st.Innings[itoa(len(c.innings))]
			if st.Score != (Score{Runs: last.Runs, Wickets: last.Wickets}) || st.Target != c.innings[0].runs+1 {
				t.Errorf("score %+v target %d", st.Score, st.Target)
			}
			for name, want := range c.batters {
				b := st.Innings[itoa(want.inn)].Batters[name]
				if b == nil {
					t.Errorf("%s did not bat", name)
					continue
				}
				if got := (bat{want.inn, b.Runs, b.Balls, b.Fours, b.Sixes, b.Out}); got != want {
					t.Errorf("%s: %+v, want %+v", name, got, want)
				}
			}
			for name, want := range c.bowlers {
				b := st.Innings[itoa(want.inn)].Bowlers[name]
				if b == nil {
					t.Errorf("%s did not bowl", name)
					continue
				}
				if got := (bowl{want.inn, b.Balls, b.Runs, b.Wickets}); got != want {
					t.Errorf("%s: %+v, want %+v", name, got, want)
				}
			}
		})
	}
}
