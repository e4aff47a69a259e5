package codec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

const (
	// DefaultMaxHeaderBytes caps the handshake's header block; a larger one is refused
	// with 431.
	DefaultMaxHeaderBytes = 8 << 10
	// MaxClientPayload caps a client message, all its fragments together; a larger one
	// closes the connection with 1009.
	MaxClientPayload = 4 << 10
	// DefaultPath is where the WebSocket endpoint lives when Upgrader.Path is empty.
	DefaultPath = "/ws"
)

// ErrIncomplete means that more bytes are needed. It is not an error to report: the
// caller keeps the bytes and calls again when more arrive.
var ErrIncomplete = errors.New("codec: incomplete")

// Request is what the gateway needs from a WebSocket handshake.
type Request struct {
	Path      string   // the request path, e.g. "/ws"
	Matches   []string // from ?match=a,b (repeatable): each passed Upgrader.ValidMatch, duplicates removed
	Token     string   // ?token=, "" if absent
	Origin    string   // Origin header, "" if absent
	Host      string   // Host header
	Protocols []string // Sec-WebSocket-Protocol tokens offered by the client, in order
	CatchUp   bool     // ?catchup=1: the client takes catch-up deltas (PROTOCOL.md `from`)

	// Selected is the subprotocol to accept. Check may set it to one of Protocols (for
	// example when the token arrives as a subprotocol, a browser needs one echoed back);
	// Upgrade then answers it in Sec-WebSocket-Protocol. A value that is not one of
	// Protocols is a bug in Check and refuses the handshake with 500.
	Selected string

	// Auth is what Check learnt about the client (for the gateway, its verified token),
	// handed back to Upgrade's caller with the Request. Upgrade never reads it.
	Auth any
}

// HTTPError refuses a handshake with an HTTP status. Upgrade writes it into the response;
// Check returns one to refuse.
type HTTPError struct {
	Status int         // 400, 401, 403, 404, 426, 431, 503 ...
	Header [][2]string // extra headers, e.g. {"Retry-After", "3"}
	Reason string      // short body text
}

// Refuse returns an *HTTPError, for Check functions.
func Refuse(status int, reason string, header ...[2]string) *HTTPError {
	return &HTTPError{Status: status, Header: header, Reason: reason}
}

// Error implements error.
func (e *HTTPError) Error() string {
	return "codec: handshake refused: " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + ": " + e.Reason
}

// Upgrader performs the server handshake on exactly the header bytes. Its methods only
// read it, so one Upgrader may serve every event loop at once.
type Upgrader struct {
	MaxHeaderBytes int    // 0 -> DefaultMaxHeaderBytes
	Path           string // "" -> DefaultPath; a WebSocket handshake for another path gets 404

	// PlainBody is the body of the 426 answer to a plain HTTP request (one without
	// "Upgrade: websocket", such as curl's). "" -> a line naming the WebSocket path.
	PlainBody string

	// ValidMatch reports whether an id listed in ?match= is one; a handshake naming
	// another is refused with 400. nil accepts any non-empty id. What a match id is
	// belongs to the application (the gateway passes bus.ValidMatchID), not to
	// WebSocket.
	ValidMatch func(id string) bool

	// Check runs after the handshake is parsed and found valid, and before the 101 is
	// produced; origin, token and admission checks live here. Returning an *HTTPError
	// refuses the handshake with its status; any other non-nil error refuses it with 500.
	// Check may set r.Selected. It runs on the caller's goroutine and must not block.
	Check func(r *Request) error
}

// Upgrade looks at in, all bytes received so far on the connection.
//
// If the header block (terminated by \r\n\r\n) is not complete yet it returns
// ErrIncomplete with n == 0, unless in already holds MaxHeaderBytes without the end of
// the block (431) or clearly is not an HTTP request (400). Otherwise it runs the handshake
// on exactly the header bytes, appends the HTTP response (101 Switching Protocols or a
// refusal) to out and returns it as resp, with n the number of header bytes consumed:
// the caller Discards them, and any bytes after them are the first WebSocket frames.
//
// err == nil: upgraded, write resp. err is *HTTPError: write resp, then close (every
// refusal carries Connection: close). The statuses are 400 (malformed handshake, bad
// Sec-WebSocket-Key, bad match id, bad query), 404 (another path), 426 (a plain HTTP
// request, or a Sec-WebSocket-Version other than 13), 431 (header block over the cap),
// 500 (Check failed without an *HTTPError) and whatever Check returns.
func (u *Upgrader) Upgrade(in []byte, out []byte) (n int, resp []byte, req Request, err error) {
	max := u.MaxHeaderBytes
	if max <= 0 {
		max = DefaultMaxHeaderBytes
	}
	end := bytes.Index(in[:min(len(in), max)], crlfcrlf)
	if end < 0 {
		if len(in) >= max {
			return u.refuse(len(in), out, req, &HTTPError{Status: http.StatusRequestHeaderFieldsTooLarge, Reason: "request header block over " + strconv.Itoa(max) + " bytes"})
		}
		// Refuse garbage (a TLS ClientHello, a random scanner) now instead of letting it
		// sit until the handshake deadline.
		if !plausibleRequestPrefix(in) {
			return u.refuse(len(in), out, req, malformed("not an HTTP request"))
		}
		// Lines ended by a bare LF would never reach the \r\n\r\n above: say so now,
		// not at the handshake deadline.
		if bytes.Contains(in, []byte("\n\n")) {
			return u.refuse(len(in), out, req, malformed("header lines must end with CRLF"))
		}
		return 0, out, req, ErrIncomplete
	}
	n = end + len(crlfcrlf)
	block := in[:n]

	// gobwas stops at the first problem it meets, in its own order, and knows nothing
	// of plain HTTP requests; classify those first so that curl gets the friendly 426
	// whatever its path and method.
	scan, ok := scanHeaders(block)
	if !ok {
		return u.refuse(n, out, req, malformed("malformed request"))
	}
	if !scan.upgrade {
		body := u.PlainBody
		if body == "" {
			body = "this is a WebSocket endpoint: connect to ws://<host>" + u.path() + "\n"
		}
		return u.refuse(n, out, req, &HTTPError{
			Status: http.StatusUpgradeRequired,
			Header: [][2]string{{"Upgrade", "websocket"}, {"Sec-WebSocket-Version", "13"}},
			Reason: body,
		})
	}

	if !scan.connUpgrade {
		return u.refuse(n, out, req, malformed("the Connection header must list upgrade"))
	}
	if scan.keys > 1 {
		return u.refuse(n, out, req, malformed("more than one Sec-WebSocket-Key"))
	}
	if !scan.canonical {
		block = canonicalBlock(block)
	}

	st := upgradeStates.Get().(*upgradeState)
	defer st.release()
	st.u, st.key = u, scan.key
	st.conn = handshakeConn{in: block, out: out}
	st.ws.ReadBufferSize = min(max, 64<<10)
	_, gerr := st.ws.Upgrade(&st.conn)
	req = st.req
	if gerr == nil {
		return n, st.conn.out, req, nil
	}
	refusal := st.refusal
	if refusal == nil {
		refusal = mapGobwasError(gerr)
	}
	// Drop whatever gobwas wrote: every refusal is ours, with Connection: close and
	// Content-Length, which gobwas's own answers lack.
	return u.refuse(n, out, req, refusal)
}

// upgradeState is the scratch of one handshake. gobwas's callbacks are bound to it once,
// when the pool makes it, so that a handshake allocates little more than the strings
// its Request keeps (BenchmarkUpgrade): every byte of a handshake's garbage is paid
// for again in a gateway's memory after a connection storm.
type upgradeState struct {
	u       *Upgrader
	key     []byte // Sec-WebSocket-Key, from scanHeaders
	uri     []byte // the request target, copied from gobwas's buffer
	req     Request
	refusal *HTTPError
	conn    handshakeConn
	ws      ws.Upgrader
}

var upgradeStates = sync.Pool{New: func() any { return newUpgradeState() }}

func newUpgradeState() *upgradeState {
	st := &upgradeState{}
	st.ws = ws.Upgrader{
		WriteBufferSize: 512,
		OnRequest: func(uri []byte) error {
			st.uri = append(st.uri[:0], uri...)
			return nil
		},
		OnHost: func(host []byte) error {
			st.req.Host = string(host)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if string(key) == "Origin" {
				st.req.Origin = string(value)
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			ok := httphead.ScanTokens(v, func(tok []byte) bool {
				st.req.Protocols = append(st.req.Protocols, string(tok))
				return true
			})
			// Returning "" keeps gobwas calling us for every Sec-WebSocket-Protocol line.
			return "", ok
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			st.refusal = st.u.accept(st.uri, st.key, &st.req)
			if st.refusal != nil {
				return nil, st.refusal
			}
			if st.req.Selected == "" {
				return nil, nil
			}
			return ws.HandshakeHeaderString("Sec-WebSocket-Protocol: " + st.req.Selected + "\r\n"), nil
		},
	}
	return st
}

// release forgets the handshake (nothing of the caller's stays referenced) and returns
// st to the pool.
func (st *upgradeState) release() {
	st.u, st.key, st.req, st.refusal, st.conn = nil, nil, Request{}, nil, handshakeConn{}
	if cap(st.uri) > 1024 {
		st.uri = nil
	}
	upgradeStates.Put(st)
}

func (u *Upgrader) path() string {
	if u.Path == "" {
		return DefaultPath
	}
	return u.Path
}

// accept runs the checks that gobwas does not know about, once gobwas has found the
// handshake itself valid: path, Sec-WebSocket-Key encoding, the query, then Check.
func (u *Upgrader) accept(uri []byte, key []byte, req *Request) *HTTPError {
	path, rawQuery, e := splitRequestURI(uri)
	if e != nil {
		return e
	}
	if path != u.path() {
		req.Path = string(path)
		return &HTTPError{Status: http.StatusNotFound, Reason: "no WebSocket endpoint at this path; use " + u.path()}
	}
	req.Path = u.path()
	// gobwas only checks the key's length; RFC 6455 4.1 wants 16 bytes in base64.
	var nonce [18]byte
	if k, err := base64.StdEncoding.Decode(nonce[:], key); err != nil || k != 16 {
		return malformed("bad Sec-WebSocket-Key")
	}
	// The whole query is checked before any match id, as url.ParseQuery would.
	if eachQueryPair(rawQuery, nil) != nil {
		return malformed("bad query string")
	}
	// Read as main's url.ParseQuery version did: the first token, the first catchup
	// (refused if not a boolean) before any match id, then every match value in order.
	var tokenSeen, catchUpSeen bool
	var catchUp string
	_ = eachQueryPair(rawQuery, func(k string, raw []byte) bool {
		switch {
		case k == "token" && !tokenSeen:
			req.Token, tokenSeen = queryValue(raw), true
		case k == "catchup" && !catchUpSeen:
			catchUp, catchUpSeen = queryValue(raw), true
		}
		return true
	})
	switch catchUp {
	case "1", "true":
		req.CatchUp = true
	case "", "0", "false":
	default:
		return malformed("bad catchup " + strconv.Quote(truncate(catchUp, 20)) + "; catchup=1 opts in")
	}
	var refusal *HTTPError
	_ = eachQueryPair(rawQuery, func(k string, raw []byte) bool {
		if k != "match" || len(raw) == 0 {
			return true
		}
		for id := range strings.SplitSeq(queryValue(raw), ",") {
			if id == "" || (u.ValidMatch != nil && !u.ValidMatch(id)) {
				refusal = malformed("bad match id " + strconv.Quote(truncate(id, 70)))
				return false
			}
			if !contains(req.Matches, id) {
				req.Matches = append(req.Matches, id)
			}
		}
		return true
	})
	if refusal != nil {
		return refusal
	}
	if u.Check == nil {
		return nil
	}
	if err := u.Check(req); err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he != nil && he.Status >= 400 && he.Status <= 599 {
			return he
		}
		return &HTTPError{Status: http.StatusInternalServerError, Reason: "handshake check failed"}
	}
	if req.Selected != "" && !contains(req.Protocols, req.Selected) {
		return &HTTPError{Status: http.StatusInternalServerError, Reason: "selected subprotocol was not offered"}
	}
	return nil
}

// mapGobwasError turns a gobwas refusal into ours. The statuses follow PROTOCOL.md: a bad
// HTTP version or method is a malformed handshake (400, where gobwas says 505 and 405),
// a Sec-WebSocket-Version other than 13 is 426.
func mapGobwasError(err error) *HTTPError {
	if err == ws.ErrHandshakeUpgradeRequired {
		return &HTTPError{
			Status: http.StatusUpgradeRequired,
			Header: [][2]string{{"Sec-WebSocket-Version", "13"}},
			Reason: "unsupported Sec-WebSocket-Version; this server speaks 13",
		}
	}
	if reason, ok := gobwasMalformedReasons[err]; ok {
		return malformed(reason)
	}
	return malformed("malformed handshake")
}

// gobwasMalformedReasons are the reasons of the 400s answering gobwas's handshake errors.
var gobwasMalformedReasons = map[error]string{
	ws.ErrHandshakeBadProtocol:   "WebSocket needs HTTP/1.1",
	ws.ErrHandshakeBadMethod:     "WebSocket needs GET",
	ws.ErrHandshakeBadSecKey:     "missing or bad Sec-WebSocket-Key",
	ws.ErrHandshakeBadSecVersion: "missing Sec-WebSocket-Version",
	ws.ErrHandshakeBadHost:       "missing Host",
	ws.ErrHandshakeBadConnection: "bad Connection header",
	ws.ErrHandshakeBadUpgrade:    "bad Upgrade header",
}

func malformed(reason string) *HTTPError {
	return &HTTPError{Status: http.StatusBadRequest, Reason: reason}
}

// refuse appends e's response to out.
func (u *Upgrader) refuse(n int, out []byte, req Request, e *HTTPError) (int, []byte, Request, error) {
	return n, AppendRefusal(out, e), req, e
}

// AppendRefusal appends the HTTP response for e to dst: the status line, Connection:
// close, the extra headers (any holding CR or LF is dropped, so a Check cannot split
// the response), Content-Type, Content-Length and the reason as the body.
func AppendRefusal(dst []byte, e *HTTPError) []byte {
	status := e.Status
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	body := e.Reason
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	for _, h := range e.Header {
		if strings.ContainsAny(h[0], "\r\n: ") || strings.ContainsAny(h[1], "\r\n") || h[0] == "" {
			continue
		}
		dst = append(dst, h[0]...)
		dst = append(dst, ": "...)
		dst = append(dst, h[1]...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}

var crlfcrlf = []byte("\r\n\r\n")

// headerScan is what Upgrade needs to know about a header block before gobwas sees it.
// Connection and Upgrade are read as RFC 9110 5.6.1 lists: comma-separated elements,
// empty ones allowed, over any number of lines, names and tokens in any case.
type headerScan struct {
	upgrade     bool   // an Upgrade field lists the websocket protocol
	connUpgrade bool   // a Connection field lists the upgrade option
	canonical   bool   // exactly one "Upgrade: websocket" and one Connection line, which gobwas reads as they are
	key         []byte // the last Sec-WebSocket-Key value, trimmed
	keys        int    // how many Sec-WebSocket-Key fields (RFC 6455 11.3.1: one)
}

// scanHeaders checks the request line's shape and reads the Upgrade, Connection and
// Sec-WebSocket-Key fields. block ends with \r\n\r\n. It reports false for a block whose
// request line is not "METHOD SP URI SP HTTP/x.y".
func scanHeaders(block []byte) (s headerScan, ok bool) {
	i := bytes.IndexByte(block, '\n')
	if !validRequestLine(bytes.TrimSuffix(block[:i], []byte("\r"))) {
		return s, false
	}
	upgradeLines, connLines := 0, 0
	simple := true
	for k, v := range headerLines(block[i+1:]) {
		if bytes.IndexByte(k, 0) >= 0 || bytes.IndexByte(v, 0) >= 0 {
			return s, false // RFC 9110 5.5: a NUL in a field is refused, not passed on
		}
		switch {
		case bytes.EqualFold(k, []byte("Upgrade")):
			upgradeLines++
			simple = simple && bytes.EqualFold(v, []byte("websocket"))
			eachListElement(v, func(e []byte) {
				// A protocol may carry a version ("websocket/13"): the name decides.
				name, _, _ := bytes.Cut(e, []byte("/"))
				s.upgrade = s.upgrade || bytes.EqualFold(name, []byte("websocket"))
			})
		case bytes.EqualFold(k, []byte("Connection")):
			connLines++
			simple = simple && bytes.EqualFold(v, []byte("upgrade"))
			eachListElement(v, func(e []byte) {
				s.connUpgrade = s.connUpgrade || bytes.EqualFold(e, []byte("upgrade"))
			})
		case bytes.EqualFold(k, []byte("Sec-WebSocket-Key")):
			s.key = v
			s.keys++
		}
	}
	s.canonical = simple && upgradeLines == 1 && connLines == 1
	return s, true
}

// headerLines yields the name and trimmed value of each field line of rest (the block
// after the request line); lines without a colon are skipped (gobwas refuses them).
func headerLines(rest []byte) func(yield func(k, v []byte) bool) {
	return func(yield func(k, v []byte) bool) {
		for len(rest) > 0 {
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				return
			}
			line := bytes.TrimSuffix(rest[:j], []byte("\r"))
			rest = rest[j+1:]
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				continue
			}
			if !yield(bytes.TrimSpace(line[:colon]), bytes.TrimSpace(line[colon+1:])) {
				return
			}
		}
	}
}

// eachListElement calls fn for each non-empty element of an RFC 9110 list value,
// trimmed of optional whitespace.
func eachListElement(v []byte, fn func([]byte)) {
	for e := range bytes.SplitSeq(v, []byte(",")) {
		if e = bytes.Trim(e, " \t"); len(e) > 0 {
			fn(e)
		}
	}
}

// canonicalBlock rewrites a header block whose Upgrade and Connection fields are valid
// RFC 9110 lists but not in the one-line form gobwas insists on ("Connection:
// keep-alive" and "Connection: Upgrade" on two lines, "Upgrade: websocket, h2c"): every
// Upgrade and Connection line is replaced by one "Upgrade: websocket" and one
// "Connection: Upgrade" line. Every other line is kept as it was, in order.
func canonicalBlock(block []byte) []byte {
	i := bytes.IndexByte(block, '\n') + 1
	out := make([]byte, 0, len(block)+40)
	out = append(out, block[:i]...)
	rest := block[i:]
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, '\n')
		line := rest[:j+1]
		rest = rest[j+1:]
		if colon := bytes.IndexByte(line, ':'); colon > 0 {
			k := bytes.TrimSpace(line[:colon])
			if bytes.EqualFold(k, []byte("Upgrade")) || bytes.EqualFold(k, []byte("Connection")) {
				continue
			}
		}
		if len(rest) == 0 { // the final empty line
			out = append(out, "Upgrade: websocket\r\nConnection: Upgrade\r\n"...)
		}
		out = append(out, line...)
	}
	return out
}

// validRequestLine reports whether line is METHOD SP URI SP HTTP/digit.digit.
func validRequestLine(line []byte) bool {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !isToken(line[:sp1]) {
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return false
	}
	for _, c := range rest[:sp2] {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	v := rest[sp2+1:]
	return len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7])
}

// plausibleRequestPrefix reports whether in could still become a request: its method is
// made of token characters, and a complete first line is a valid request line.
func plausibleRequestPrefix(in []byte) bool {
	if i := bytes.IndexByte(in, '\n'); i >= 0 {
		return validRequestLine(bytes.TrimSuffix(in[:i], []byte("\r")))
	}
	sp := bytes.IndexByte(in, ' ')
	if sp < 0 {
		sp = len(in)
	}
	return (sp > 0 || len(in) == 0) && isToken(in[:sp])
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// handshakeConn feeds gobwas exactly the header block and collects its response.
type handshakeConn struct {
	in  []byte
	out []byte
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *handshakeConn) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}
