package codec

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"crease/bus"
)

// FuzzReader feeds random bytes to a Reader whole, split at every point and byte by byte.
// Every way must give the same events and the same error, never a panic, and never a
// message over the cap (feed checks the invariants of each event). Inputs over 512 bytes
// are split at every point of their first and last 128 bytes and at 128 points between,
// which keeps an execution short enough for the fuzzer to make progress.
func FuzzReader(f *testing.F) {
	f.Add(splitStream(f))
	f.Add(clientFrame(f, true, ws.OpText, []byte("hello")))
	f.Add(clientFrame(f, true, ws.OpText, []byte("h\xffllo")))
	f.Add(clientFrame(f, true, ws.OpClose, closePayload(1000, "bye")))
	f.Add(clientFrame(f, true, ws.OpClose, []byte{1}))
	f.Add(join(clientFrame(f, false, ws.OpBinary, make([]byte, 4000)), rawHeader(0x80, true, 97)))
	f.Add(join(clientFrame(f, false, ws.OpText, []byte("\xe2")), clientFrame(f, true, ws.OpContinuation, []byte("\x82\xac"))))
	f.Add(rawHeader(0x81, true, 1<<62))
	f.Add(rawHeader(0x81, false, 3))
	f.Add([]byte{0x89, 0xfe, 0, 126})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2*MaxClientPayload+64 {
			return // over two maximal messages: nothing new to find
		}
		whole := feed(t, bytes.Clone(data))
		for i := 0; i <= len(data); i++ {
			if len(data) > 512 && i > 128 && i < len(data)-128 && i%(len(data)/128) != 0 {
				continue
			}
			if got := feed(t, bytes.Clone(data), i); !got.equal(whole) {
				t.Fatalf("split at %d: %v\nwhole: %v", i, got, whole)
			}
		}
		checkByteByByte(t, data, whole)
	})
}

// upgradeStatuses are the statuses Upgrade produces without a Check.
var upgradeStatuses = map[int]bool{101: true, 400: true, 404: true, 426: true, 431: true}

// FuzzUpgrade runs random handshake bytes through Upgrade: never a panic, n within in,
// and an answer that is a well-formed HTTP response with one of the documented statuses.
func FuzzUpgrade(f *testing.F) {
	valid := "GET /ws?match=m1,m2&token=t HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: o\r\nSec-WebSocket-Protocol: a, b\r\n\r\n"
	f.Add([]byte(valid))
	f.Add([]byte(valid + "\x81\x80abcd"))
	f.Add([]byte(strings.Replace(valid, "13", "8", 1)))
	f.Add([]byte(strings.Replace(valid, "/ws", "/", 1)))
	f.Add([]byte(strings.Replace(valid, "m1,m2", "m1,,!", 1)))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nX: " + strings.Repeat("a", 9000)))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkUpgrade(t, in)
		// Random bytes rarely make a header block; this variant lets the fuzzer explore
		// header lines written with bare newlines.
		lines := bytes.ReplaceAll(bytes.ReplaceAll(in, []byte("\r"), nil), []byte("\n"), []byte("\r\n"))
		checkUpgrade(t, append(lines, "\r\n\r\n"...))
	})
}

// checkUpgrade runs in through Upgrade and checks everything its answer promises.
func checkUpgrade(t *testing.T, in []byte) {
	t.Helper()
	u := &Upgrader{ValidMatch: bus.ValidMatchID}
	orig := bytes.Clone(in)
	n, resp, req, err := u.Upgrade(in, nil)
	if n < 0 || n > len(in) {
		t.Fatalf("n = %d of %d", n, len(in))
	}
	if !bytes.Equal(in, orig) {
		t.Fatal("Upgrade modified its input")
	}
	if err == ErrIncomplete {
		if n != 0 || len(resp) != 0 {
			t.Fatalf("incomplete with n %d, resp %q", n, resp)
		}
		return
	}
	var he *HTTPError
	if err != nil && !errors.As(err, &he) {
		t.Fatalf("err %v of type %T", err, err)
	}
	r, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
	if rerr != nil {
		t.Fatalf("response does not parse: %v\n%q", rerr, resp)
	}
	if !upgradeStatuses[r.StatusCode] {
		t.Fatalf("status %d not documented\n%q", r.StatusCode, resp)
	}
	if err == nil {
		if r.StatusCode != 101 || n < 4 || string(in[n-4:n]) != "\r\n\r\n" {
			t.Fatalf("upgraded with status %d, n %d", r.StatusCode, n)
		}
		if req.Path != DefaultPath || len(r.Header.Get("Sec-WebSocket-Accept")) != 28 {
			t.Fatalf("upgraded at path %q with %q", req.Path, resp)
		}
		for _, m := range req.Matches {
			if !bus.ValidMatchID(m) {
				t.Fatalf("invalid match id %q accepted", m)
			}
		}
		return
	}
	if he.Status != r.StatusCode || !r.Close {
		t.Fatalf("status %d, err %v, Connection: close %v", r.StatusCode, err, r.Close)
	}
	body, _ := io.ReadAll(r.Body)
	if len(body) == 0 || int64(len(body)) != r.ContentLength {
		t.Fatalf("body %q, Content-Length %d", body, r.ContentLength)
	}
}
