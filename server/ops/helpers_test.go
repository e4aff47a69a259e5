package ops_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// ---- a raw WebSocket client: every server frame is read and checked strictly ----

type (
	wsConn = servertest.WSConn
	frame  = servertest.Frame
)

// dialWS upgrades; a non-101 answer comes back as resp with a nil conn.
func dialWS(addr, path string, local net.IP, header string) (*wsConn, *http.Response, error) {
	return servertest.DialWS(addr, path, local, header)
}

// ---- publishing ----

type publisher struct {
	b   bus.Publisher
	seq map[string]uint64
}

func newPublisher(b bus.Publisher) *publisher { return &publisher{b: b, seq: map[string]uint64{}} }

func (p *publisher) delta(match, prio string) error {
	p.seq[match]++
	n := p.seq[match]
	frame := fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":%q,"ts":%d,"patch":{"score":{"runs":%d}}}`,
		match, n, prio, time.Now().UnixMicro(), n)
	state := fmt.Appendf(nil, `{"score":{"runs":%d}}`, n)
	return p.b.PublishDelta(context.Background(), bus.Delta{Match: match, Title: "T " + match, Epoch: "e1", Seq: n, State: state, Frame: frame})
}

func (p *publisher) event(match, text string) error {
	frame := fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,"kind":"commentary","text":%q}`,
		match, time.Now().UnixMicro(), text)
	return p.b.PublishEvent(context.Background(), match, frame)
}

// ---- HTTP and metrics ----

func get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// samples is one scrape: series text (name{labels}) → value.
type samples map[string]float64

func scrape(t testing.TB, s *server.Server) samples {
	t.Helper()
	code, _, body := get(t, servertest.HTTPURL(s)+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return parseMetrics(t, body)
}

func parseMetrics(t testing.TB, body string) samples {
	t.Helper()
	out := samples{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// family returns the series of one metric name (exactly that name, any labels).
func (m samples) family(name string) samples {
	out := samples{}
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// sum adds the series of name whose labels contain every one of with (e.g. `loop="0"`).
func (m samples) sum(name string, with ...string) float64 {
	var total float64
outer:
	for k, v := range m.family(name) {
		for _, w := range with {
			if !strings.Contains(k, w) {
				continue outer
			}
		}
		total += v
	}
	return total
}

func (m samples) has(name string) bool { return len(m.family(name)) > 0 }

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
