package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"crease/bus"
)

// Simulator defaults.
const (
	DefaultSimPrefix = "sim"
	DefaultSimOvers  = 20
)

// Errors of SimOptions.
var (
	ErrSimPrefix = errors.New("ingest: simulator prefix does not make valid match ids")
	ErrSimOvers  = errors.New("ingest: simulator overs must be 1 to 50")
)

// SimOptions configures a Simulator. The zero value is valid.
type SimOptions struct {
	// Seed makes the matches reproducible: the same seed, id and game give the same match.
	Seed uint64
	// Prefix of the match ids, "sim" for sim-1, sim-2...
	Prefix string
	// Overs per innings; 0 means DefaultSimOvers.
	Overs int
}

// Simulator makes random but plausible limited-overs matches, as Cricsheet JSON read back
// by ReadMatch: they go through the same validation, scorer and deltas as real ones.
// It holds no mutable state and is safe for concurrent use.
type Simulator struct {
	opts SimOptions
}

// NewSimulator validates opts.
func NewSimulator(opts SimOptions) (*Simulator, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultSimPrefix
	}
	if !bus.ValidMatchID(opts.Prefix + "-18446744073709551615") {
		return nil, ErrSimPrefix
	}
	if opts.Overs == 0 {
		opts.Overs = DefaultSimOvers
	}
	if opts.Overs < 1 || opts.Overs > 50 {
		return nil, ErrSimOvers
	}
	return &Simulator{opts: opts}, nil
}

// ID is the id of the n-th simulated match stream: "sim-n".
func (s *Simulator) ID(n uint64) string { return s.opts.Prefix + "-" + strconv.FormatUint(n, 10) }

// Match is game number game (0, 1, ...) of stream n, with id ID(n).
func (s *Simulator) Match(n, game uint64) (*Match, error) {
	rng := rand.New(rand.NewPCG(s.opts.Seed^0x9e3779b97f4a7c15, n<<32^game))
	doc := simulate(rng, s.opts.Overs, n, game)
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return ReadMatchID(s.ID(n), s.ID(n)+"-game"+strconv.FormatUint(game, 10)+".json", data)
}

// Replay plays stream n forever: one simulated match after another under the id ID(n),
// seq going on, with opts.LoopPause between matches (opts.Loop is implied). It returns like
// Replay.
func (s *Simulator) Replay(ctx context.Context, pub bus.Publisher, n uint64, opts ReplayOptions) error {
	first, err := s.Match(n, 0)
	if err != nil {
		return err
	}
	game := uint64(0)
	next := func() (*Match, error) {
		game++
		return s.Match(n, game)
	}
	opts.Loop = true
	return replay(ctx, pub, first, next, opts)
}

type simState struct {
	rng   *rand.Rand
	bpo   int
	overs int
}

// simulate writes one match in Cricsheet JSON form (as generic maps, to stay independent
// of the reader's types).
func simulate(rng *rand.Rand, overs int, n, game uint64) map[string]any {
	teamPool := [...]string{
		"Harbour Herons", "Valley Vipers", "Coastal Kestrels", "Northern Owls", "Desert Falcons",
		"River Rhinos", "Mountain Lynx", "Island Ibis",
	}

	surnames := [...]string{
		"Abbott", "Bhatt", "Carter", "Dias", "Evans", "Fernando", "Gill", "Hassan", "Iqbal",
		"Jones", "Khan", "Lal", "Morgan", "Naidu", "Okafor", "Patel", "Qureshi", "Rao", "Smith",
		"Taylor", "Ueda", "Varma", "Walsh", "Xavier", "Yadav", "Zaman", "Baker", "Chopra",
		"Dunn", "Ellis", "Fraser", "Gomez", "Hughes", "Iyer", "Joshi", "Kapoor", "Lewis", "Mehta",
		"Nair", "Owen", "Perera", "Reid", "Shah", "Tiwari", "Udal", "Vaz", "Wood", "Young",
	}

	venues := [...]string{"Crease Oval", "Riverside Ground", "Seaview Park", "Old Mill Stadium"}

	ti := rng.Perm(len(teamPool))
	teams := []string{teamPool[ti[0]], teamPool[ti[1]]}
	names := rng.Perm(len(surnames))
	initials := "ABCDEFGHJKLMNPRSTW"
	xi := func(t int) []string {
		p := make([]string, 11)
		for i := range p {
			p[i] = string(initials[rng.IntN(len(initials))]) + " " + surnames[names[t*11+i]]
		}
		return p
	}
	players := [][]string{xi(0), xi(1)}
	st := &simState{rng: rng, bpo: 6, overs: overs}
	toss := rng.IntN(2)
	decision := []string{"bat", "field"}[rng.IntN(2)]
	first := toss
	if decision == "field" {
		first = 1 - toss
	}
	var innings []any
	runs1, inn1 := st.innings(teams[first], players[first], players[1-first], overs, 10)
	innings = append(innings, inn1)
	runs2, wk2, inn2 := st.chase(teams[1-first], players[1-first], players[first], overs, runs1+1, 10)
	innings = append(innings, inn2)
	outcome := map[string]any{}
	switch {
	case runs2 > runs1:
		outcome["winner"] = teams[1-first]
		outcome["by"] = map[string]any{"wickets": 10 - wk2}
	case runs2 < runs1:
		outcome["winner"] = teams[first]
		outcome["by"] = map[string]any{"runs": runs1 - runs2}
	default:
		// A tie: super overs until one side wins (the side batting second in the match
		// bats first in the super over), as the playing conditions say; give up after 3.
		outcome["result"] = "tie"
		a, b := 1-first, first
		for range 3 {
			ra, ia := st.innings(teams[a], players[a], players[b], 1, 2)
			ia["super_over"] = true
			rb, _, ib := st.chase(teams[b], players[b], players[a], 1, ra+1, 2)
			ib["super_over"] = true
			innings = append(innings, ia, ib)
			if ra != rb {
				w := a
				if rb > ra {
					w = b
				}
				outcome["eliminator"] = teams[w]
				break
			}
			a, b = b, a
		}
	}
	return map[string]any{
		"meta": map[string]any{"data_version": "1.1.0", "created": "2026-01-01", "revision": 1},
		"info": map[string]any{
			"balls_per_over": st.bpo,
			"dates":          []string{fmt.Sprintf("2026-%02d-%02d", 1+n%12, 1+game%28)},
			"event":          map[string]any{"name": "crease Synthetic League", "match_number": game + 1},
			"gender":         "male",
			"match_type":     "T20",
			"outcome":        outcome,
			"overs":          overs,
			"players":        map[string]any{teams[0]: players[0], teams[1]: players[1]},
			"teams":          teams,
			"toss":           map[string]any{"winner": teams[toss], "decision": decision},
			"venue":          venues[rng.IntN(len(venues))],
		},
		"innings": innings,
	}
}

// chase is an innings with a target; it returns runs, wickets and the innings.
func (st *simState) chase(team string, bat, bowl []string, overs, target, maxWk int) (int, int, map[string]any) {
	runs, wk, inn := st.play(team, bat, bowl, overs, target, maxWk)
	inn["target"] = map[string]any{"runs": target, "overs": overs}
	return runs, wk, inn
}

func (st *simState) innings(team string, bat, bowl []string, overs, maxWk int) (int, map[string]any) {
	runs, _, inn := st.play(team, bat, bowl, overs, 0, maxWk)
	return runs, inn
}

// play simulates one innings ball by ball: who is on strike, strike rotation, the end of
// overs, wickets and the new batter, bowlers limited to a fifth of the overs each.
func (st *simState) play(team string, bat, bowl []string, overs, target, maxWk int) (int, int, map[string]any) {
	rng := st.rng
	striker, nonStriker, nextBat := 0, 1, 2
	runs, wk := 0, 0
	bowlers := bowl[5:] // the last six of the XI bowl
	quota := make([]int, len(bowlers))
	maxOvers := max(1, (overs+4)/5)
	prevBowler := -1
	var oversOut []any
	done := false
	for o := 0; o < overs && !done; o++ {
		b := rng.IntN(len(bowlers))
		for tries := 0; (b == prevBowler || quota[b] >= maxOvers) && tries < 50; tries++ {
			b = rng.IntN(len(bowlers))
		}
		if b == prevBowler && len(bowlers) > 1 {
			b = (b + 1) % len(bowlers)
		}
		prevBowler = b
		quota[b]++
		var dels []any
		legal := 0
		for legal < st.bpo && !done {
			d := map[string]any{"batter": bat[striker], "non_striker": bat[nonStriker], "bowler": bowlers[b]}
			batR, ext := 0, map[string]any{}
			extras := 0
			var wicket map[string]any
			x := rng.Float64()
			switch {
			case x < 0.035: // wide
				n := 1 + boolInt(rng.Float64() < 0.1)*4
				ext["wides"], extras = n, n
			case x < 0.045: // no-ball, maybe hit
				ext["noballs"], extras = 1, 1
				batR = []int{0, 1, 1, 2, 4, 6}[rng.IntN(6)]
			case x < 0.065: // leg byes or byes
				k := "legbyes"
				if rng.IntN(4) == 0 {
					k = "byes"
				}
				n := 1 + rng.IntN(2)
				if rng.IntN(10) == 0 {
					n = 4
				}
				ext[k], extras = n, n
			case x < 0.12: // wicket
				kinds := []string{"caught", "caught", "caught", "caught", "bowled", "bowled", "lbw", "run out", "stumped", "caught and bowled"}
				k := kinds[rng.IntN(len(kinds))]
				out := bat[striker]
				wicket = map[string]any{"player_out": out, "kind": k}
				fielder := bowl[rng.IntN(len(bowl))]
				switch k {
				case "caught":
					if fielder == bowlers[b] {
						wicket["kind"] = "caught and bowled" // as Cricsheet records it
					} else {
						wicket["fielders"] = []any{map[string]any{"name": fielder}}
					}
				case "stumped":
					wicket["fielders"] = []any{map[string]any{"name": bowl[0]}}
				case "run out":
					wicket["fielders"] = []any{map[string]any{"name": fielder}}
					batR = rng.IntN(2)
					if rng.IntN(3) == 0 {
						wicket["player_out"] = bat[nonStriker]
					}
				}
			default:
				batR = []int{0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 4, 4, 6}[rng.IntN(15)]
			}
			d["runs"] = map[string]any{"batter": batR, "extras": extras, "total": batR + extras}
			if len(ext) > 0 {
				d["extras"] = ext
			}
			_, wide := ext["wides"]
			_, noball := ext["noballs"]
			if !wide && !noball {
				legal++
			}
			runs += batR + extras
			ran := batR
			if n, ok := ext["byes"].(int); ok {
				ran = n
			}
			if n, ok := ext["legbyes"].(int); ok {
				ran = n
			}
			if n, ok := ext["wides"].(int); ok {
				ran = n - 1
			}
			if ran%2 == 1 {
				striker, nonStriker = nonStriker, striker
			}
			if wicket != nil {
				d["wickets"] = []any{wicket}
				wk++
				outIdx := striker
				if wicket["player_out"] == bat[nonStriker] {
					outIdx = nonStriker
				}
				if wk >= maxWk || nextBat >= len(bat) {
					done = true
				} else if outIdx == striker {
					striker = nextBat
					nextBat++
				} else {
					nonStriker = nextBat
					nextBat++
				}
			}
			dels = append(dels, d)
			if target > 0 && runs >= target {
				done = true
			}
		}
		oversOut = append(oversOut, map[string]any{"over": o, "deliveries": dels})
		striker, nonStriker = nonStriker, striker
	}
	return runs, wk, map[string]any{"team": team, "overs": oversOut}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
