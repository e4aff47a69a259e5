package ops_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"crease/bus"
	"crease/server/servertest"
)

// ---- a raw WebSocket client: every server frame is read and checked strictly ----

type (
	wsConn = servertest.WSConn
	frame  = servertest.Frame
)

// dialSubscribed opens n connections to the WebSocket address addr that subscribe to
// match (?match=), each read past its hello and subscribed; the test's end closes them.
func dialSubscribed(t testing.TB, addr, match string, n int) []*wsConn {
	t.Helper()
	conns := make([]*wsConn, n)
	for i := range conns {
		c, resp, err := servertest.DialWS(addr, "/ws?match="+match, nil, "")
		if err != nil || c == nil {
			t.Fatalf("client %d of %s: %v %v", i, match, err, resp)
		}
		t.Cleanup(func() { c.Close() })
		c.Expect(t, "hello")
		c.Expect(t, "subscribed")
		conns[i] = c
	}
	return conns
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

// ---- HTTP ----

func get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	a := servertest.Fetch(t, &http.Client{Timeout: 5 * time.Second}, url)
	return a.Status, a.Header, string(a.Body)
}
