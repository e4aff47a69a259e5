// Command recovery measures recovery without snapshots (issue 17: history replay on
// reconnect, catch-up deltas for slow clients) side by side with the resync route, on a
// real gateway process (crease serve on Redis) fed by crease ingest replaying a real
// match, with Go clients (crease/client, client.Checker on every one) in this process:
//
//   - airplane: clients on a toxiproxy 2G link (≈50 kbit/s, 300-600 ms each way) lose it
//     for 30 s (every connection reset, reconnects refused), then get it back: bytes and
//     requests per client until it holds the state of the moment the network came back,
//     the time that takes, and the gateway's CPU meanwhile;
//   - slowmix: 10% of the clients read at 3 KB/s (a stream of ~10 KB/s): the fast
//     clients' delivery latency p99 and the slow clients' snapshots and bytes;
//   - storm: a gateway hands over to a successor on the same ports (--reuse-port, then
//     SIGTERM: reconnect{after_ms} spread over the drain window): the snapshot requests
//     and bytes, and the history reads, of the reconnect storm.
//
// Modes: resync (the successor or gateway runs --no-replay: every reconnect takes the
// snapshot route, as before issue 17), replay (subscribe with since answered from
// history), catchup (the same with ?catchup=1: a replay, or a slow client's queue, is one
// delta with `from`).
//
//	cd bench && go run ./cmd/recovery --crease-bin ../bin/crease [-scenarios airplane,slowmix,storm]
//
// It prints markdown tables (medians, ratios to resync). The machine is shared: runs are
// kept small (10 airplane clients, 100 in the slow mix, 400 in the storm).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"crease/bench/internal/repo"
)

func main() {
	creaseBin := flag.String("crease-bin", "", "crease binary (default: build ./cmd/crease of the repository)")
	scenarios := flag.String("scenarios", "airplane,slowmix,storm", "scenarios to run")
	modes := flag.String("modes", "resync,replay,catchup", "modes to compare")
	airplaneClients := flag.Int("airplane-clients", 10, "clients of the airplane scenario")
	stormClients := flag.Int("storm-clients", 400, "clients of the storm scenario")
	outage := flag.Duration("outage", 30*time.Second, "airplane mode length")
	flag.Parse()

	root, err := repo.Root()
	if err != nil {
		fatal(err)
	}
	logs := filepath.Join(root, "bench", "bin", "logs", "recovery-"+time.Now().Format("20060102-150405"))
	if *creaseBin == "" {
		*creaseBin = filepath.Join(root, "bench", "bin", "crease")
		if out, err := repo.GoBuild(root, *creaseBin, "./cmd/crease"); err != nil {
			fatal(fmt.Errorf("build crease: %v\n%s", err, out))
		}
	}
	e, err := newEnv(root, *creaseBin, logs)
	if err != nil {
		fatal(err)
	}
	defer e.close()
	fmt.Printf("## Recovery without snapshots (issue 17)\n\n`cd bench && go run ./cmd/recovery -scenarios %s -modes %s`, %s, %s.\n\n",
		*scenarios, *modes, repo.Machine(), time.Now().Format("2006-01-02"))
	ms := strings.Split(*modes, ",")
	for _, s := range strings.Split(*scenarios, ",") {
		switch s {
		case "airplane":
			var rs []airplaneResult
			for _, m := range ms {
				r, err := e.airplane(m, *airplaneClients, *outage)
				if err != nil {
					fatal(fmt.Errorf("airplane %s: %w", m, err))
				}
				rs = append(rs, r)
			}
			printAirplane(rs, *outage)
		case "slowmix":
			var rs []slowResult
			for _, m := range ms {
				if m == "replay" {
					continue // the slow clients never reconnect: replay changes nothing
				}
				r, err := e.slowmix(m)
				if err != nil {
					fatal(fmt.Errorf("slowmix %s: %w", m, err))
				}
				rs = append(rs, r)
			}
			printSlow(rs)
		case "storm":
			var rs []stormResult
			for _, m := range ms {
				r, err := e.storm(m, *stormClients)
				if err != nil {
					fatal(fmt.Errorf("storm %s: %w", m, err))
				}
				rs = append(rs, r)
			}
			printStorm(rs)
		default:
			fatal(fmt.Errorf("unknown scenario %q", s))
		}
	}
	fmt.Printf("Logs: %s\n", logs)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "recovery:", err)
	os.Exit(1)
}
