package examples_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	busredis "crease/bus/redis"
	"crease/client"
	"crease/internal/npmtest"
	"crease/internal/redistest"
	"crease/internal/testenv"
	"crease/server"
	"crease/server/servertest"
)

// node returns the node binary, with the example's npm dependencies installed
// (scripts/ensure-deps.sh does it for make test).
func node(t *testing.T) string {
	t.Helper()
	bin := npmtest.Node(t)
	if _, err := os.Stat("node-publisher/node_modules/redis"); err != nil {
		testenv.Missing(t, "examples/node-publisher/node_modules is needed (make deps: scripts/ensure-deps.sh runs npm ci there): "+err.Error())
	}
	return bin
}

// The Node.js publisher writes a match with crease's publish script; a real gateway
// lists it and a real client follows it to the publisher's final state. Run again, the
// publisher resumes the stored match (same epoch) instead of starting over.
func TestNodePublisherThroughRealGateway(t *testing.T) {
	nodeBin := node(t)
	srv := redistest.Start(t)
	quiet := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	b, err := busredis.New(busredis.Options{Addrs: []string{srv.Addr()}, Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	gw := servertest.Run(t, server.Options{Bus: b, Registerer: reg, Gatherer: reg, Loops: 1})

	check := client.NewChecker()
	c, err := client.New(client.Options{URL: servertest.WSURL(gw, ""), BaseHTTP: servertest.HTTPURL(gw), Observer: check,
		Backoff: client.Backoff{Base: 50 * time.Millisecond, Cap: 500 * time.Millisecond, InitialSpread: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe("cup-final", func(client.State) {}); err != nil {
		t.Fatal(err)
	}
	servertest.Background(t, c.Run)
	// Publish only once the client holds the (empty) match, so it follows every delta.
	servertest.Eventually(t, 10*time.Second, func() error {
		if n := servertest.Metric(t, servertest.HTTPURL(gw), "crease_bus_subscriptions"); n < 1 {
			return errNotYet
		}
		return nil
	})

	run := func(steps string) client.Snapshot {
		t.Helper()
		cmd := exec.Command(nodeBin, "node-publisher/publish.mjs", "--redis", srv.Addr(), "--match", "cup-final", "--steps", steps, "--interval-ms", "5")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("node publisher: %v\n%s", err, errb.String())
		}
		var fin client.Snapshot
		if err := json.Unmarshal(out.Bytes(), &fin); err != nil {
			t.Fatalf("node publisher output %q: %v (stderr %s)", out.String(), err, errb.String())
		}
		return fin
	}
	first := run("20")
	second := run("30") // resumes at 20, goes on to 30
	if first.Seq != 20 || second.Seq != 30 || second.Epoch != first.Epoch || first.Epoch == "" {
		t.Fatalf("runs ended at %s:%d and %s:%d", first.Epoch, first.Seq, second.Epoch, second.Seq)
	}
	servertest.Eventually(t, 10*time.Second, func() error { return check.Verify(second) })

	resp, err := http.Get(servertest.HTTPURL(gw) + "/v1/matches")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []struct {
		Match, Title, Epoch string
		Seq                 uint64
	}
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Match != "cup-final" || rows[0].Title != "Harbour FC v Valley United" || rows[0].Epoch != second.Epoch || rows[0].Seq != 30 {
		t.Fatalf("/v1/matches: %+v", rows)
	}
	if !strings.Contains(string(second.State), `"status":"full_time"`) {
		t.Fatalf("final state %s", second.State)
	}
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}
