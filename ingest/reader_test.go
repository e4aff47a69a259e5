package ingest

import (
	"errors"
	"strings"
	"testing"
)

func TestReadMatchRefusesWithFileAndPlace(t *testing.T) {
	good := func() obj {
		return doc(winA(1),
			inns("A", over(0, dots("a1", "a2", "b1", 6)...)),
			inns("B",
				over(0, dots("b1", "b2", "a1", 6)...),
				over(14, ball("b1", "b2", "a1", 0), ball("b1", "b2", "a1", 0), ball("b1", "b2", "a1", 4)),
			),
		)
	}
	// del is delivery 3 of over 14 of innings 2.
	del := func(d obj) obj {
		return d["innings"].([]any)[1].(obj)["overs"].([]any)[1].(obj)["deliveries"].([]any)[2].(obj)
	}
	cases := []struct {
		name   string
		mutate func(d obj)
		want   string
	}{
		{"total", func(d obj) { del(d)["runs"].(obj)["total"] = 5 }, "x.json: innings 2, over 14, ball 3: runs.total 5 != batter 4 + extras 0"},
		{"negative", func(d obj) { del(d)["runs"] = obj{"batter": -1, "extras": 0, "total": -1} }, "x.json: innings 2, over 14, ball 3: runs.batter -1 is negative"},
		{"extras sum", func(d obj) { del(d)["runs"] = obj{"batter": 4, "extras": 1, "total": 5} }, "x.json: innings 2, over 14, ball 3: runs.extras 1 != the sum of extras 0"},
		{"unknown field", func(d obj) { del(d)["spin"] = 3 }, `x.json: innings 2, over 14, ball 3: unknown field "spin"`},
		{"not at crease", func(d obj) { out(del(d), "b7", "caught", "a2") }, `x.json: innings 2, over 14, ball 3: caught of "b7", who is not at the crease`},
		{"unknown kind", func(d obj) { out(del(d), "b1", "beaned") }, `x.json: innings 2, over 14, ball 3: wicket kind "beaned" is unknown`},
		{"wide and no-ball", func(d obj) { ext(ext(del(d), "wides", 1), "noballs", 1) }, "x.json: innings 2, over 14, ball 3: a delivery cannot be both a wide and a no-ball"},
		{"same ends", func(d obj) { del(d)["non_striker"] = "b1" }, `x.json: innings 2, over 14, ball 3: batter "b1" is also the non_striker`},
		{"bowled off a no-ball", func(d obj) { out(ext(del(d), "noballs", 1), "b1", "bowled") }, "x.json: innings 2, over 14, ball 3: bowled off a no-ball"},
		{"bats again", func(d obj) {
			out(d["innings"].([]any)[1].(obj)["overs"].([]any)[0].(obj)["deliveries"].([]any)[5].(obj), "b1", "bowled")
		}, `x.json: innings 2, over 14, ball 1: "b1" bats again after being dismissed at over 0, ball 6`},
		{"over order", func(d obj) { d["innings"].([]any)[1].(obj)["overs"].([]any)[1].(obj)["over"] = 0 }, "x.json: innings 2, over 0: over number 0 does not follow over 0"},
		{"empty over", func(d obj) { d["innings"].([]any)[1].(obj)["overs"].([]any)[1].(obj)["deliveries"] = []any{} }, "x.json: innings 2, over 14: over without deliveries"},
		{"innings team", func(d obj) { d["innings"].([]any)[1].(obj)["team"] = "C" }, `x.json: innings 2: team "C" is not one of the teams`},
		{"teams", func(d obj) { d["info"].(obj)["teams"] = []any{"A", "A"} }, `x.json: info.teams ["A" "A"] is not two different teams`},
		{"winner", func(d obj) { d["info"].(obj)["outcome"] = obj{"winner": "Z"} }, `x.json: info.outcome.winner "Z" is not one of the teams`},
		{"no outcome", func(d obj) { d["info"].(obj)["outcome"] = obj{} }, "x.json: info.outcome has neither a winner nor a result"},
		{"balls per over", func(d obj) { d["info"].(obj)["balls_per_over"] = 99 }, "x.json: info.balls_per_over 99 is out of range 1..8"},
		{"unknown info", func(d obj) { d["info"].(obj)["weather"] = "sunny" }, `x.json: unknown field "weather"`},
		{"type", func(d obj) { d["info"].(obj)["overs"] = "twenty" }, "x.json: line 1, column "},
		{"target", func(d obj) { d["innings"].([]any)[1].(obj)["target"] = obj{"runs": 0, "overs": 20} }, "x.json: innings 2: target {Overs:20 Runs:0} is impossible"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := good()
			if _, err := ReadMatch("x.json", mustJSON(t, d)); err != nil {
				t.Fatalf("the unmutated match is refused: %v", err)
			}
			c.mutate(d)
			_, err := ReadMatch("dir/x.json", mustJSON(t, d))
			if err == nil {
				t.Fatal("accepted")
			}
			got := strings.TrimPrefix(err.Error(), "dir/")
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("error\n%s\nwant\n%s", got, c.want)
			}
			if !errors.Is(err, ErrInvalidMatch) {
				t.Errorf("%v is not ErrInvalidMatch", err)
			}
		})
	}
}

func TestReadMatchTruncatedAndGarbage(t *testing.T) {
	data := matchData(t, "335982")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)/2], "335982.json: truncated file"},
		{"syntax", []byte(strings.Replace(string(data), `"balls_per_over": 6,`, `"balls_per_over": 6;`, 1)), "335982.json: line 8, column 24: invalid character ';' after object key:value pair"},
		{"trailing", append(append([]byte{}, data...), "{}"...), "335982.json: trailing data after the JSON value"},
		{"empty", nil, "335982.json: truncated file"},
		{"not an object", []byte("[1,2]"), "335982.json: line 1, column "},
	} {
		_, err := ReadMatch("335982.json", c.data)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, ErrInvalidMatch) {
			t.Errorf("%s: %v, want %q...", c.name, err, c.want)
		}
	}
	if _, err := ReadMatch("bad id!.json", data); err == nil || !strings.Contains(err.Error(), "match id") {
		t.Errorf("bad id: %v", err)
	}
	m, err := ReadMatchID("ipl-2008-1", "335982.json", data)
	if err != nil || m.ID() != "ipl-2008-1" || m.Final().Match != "ipl-2008-1" {
		t.Fatalf("ReadMatchID: %v", err)
	}
}

func TestOversToBalls(t *testing.T) {
	for _, c := range []struct {
		overs float64
		bpo   int
		balls int
		ok    bool
	}{
		{20, 6, 120, true}, {18.4, 6, 112, true}, {5.3, 6, 33, true}, {0.5, 6, 5, true},
		{18.6, 6, 0, false}, {3.4, 5, 19, true}, {3.5, 5, 0, false}, {1.25, 6, 0, false},
	} {
		b, ok := oversToBalls(c.overs, c.bpo)
		if b != c.balls || ok != c.ok {
			t.Errorf("oversToBalls(%v, %d) = %d, %v; want %d, %v", c.overs, c.bpo, b, ok, c.balls, c.ok)
		}
	}
}
