package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/panjf2000/gnet/v2"

	"crease/bus"
	"crease/codec"
	"crease/shard"
)

// handler implements gnet.EventHandler. Every method runs on an event loop and must not
// block.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

// OnBoot runs once on the engine's start goroutine.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.engine = eng
	close(h.s.engineUp)
	return gnet.None
}

// OnOpen runs on the connection's loop when it is enrolled.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if gc.LocalAddr() != nil && gc.LocalAddr().Network() == "unix" {
		// The start-up probe on gnet's private socket (see Start).
		h.s.loopsOK.Do(func() { close(h.s.loopsUp) })
		return nil, gnet.Close
	}
	sh := h.s.shardFor(gc.EventLoop())
	gc.SetContext(sh.Open(gc))
	return nil, gnet.None
}

// OnClose runs on the connection's loop after gnet closed it.
func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if gc.LocalAddr() != nil && gc.LocalAddr().Network() == "unix" {
		return gnet.None // the start-up probe: never counted in open
	}
	h.s.open.Add(-1)
	if c, ok := gc.Context().(*shard.Conn); ok {
		h.s.shardFor(gc.EventLoop()).Closed(c)
		gc.SetContext(nil)
	}
	return gnet.None
}

// OnTraffic runs on the connection's loop when bytes arrived; it consumes every complete
// handshake or frame, keeping partial ones for the next call.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*shard.Conn)
	if !ok {
		return gnet.Close
	}
	sh := h.s.shardFor(gc.EventLoop())
	switch c.State() {
	case shard.StateHandshake:
		if !h.s.handshake(sh, c) {
			return gnet.None
		}
	case shard.StateOpen:
	default:
		// Closing: what the peer still sends is of no interest.
		_, _ = gc.Discard(gc.InboundBuffered())
		return gnet.None
	}
	sh.Touch(c)
	h.s.readFrames(sh, c)
	return gnet.None
}

// handshake runs the upgrade once the header block is complete. It returns true when c
// is open and frames may follow.
func (s *Server) handshake(sh *shard.Shard, c *shard.Conn) bool {
	gc := c.Net()
	in, _ := gc.Peek(-1)
	n, resp, req, err := s.upgrader.Upgrade(in, nil)
	if errors.Is(err, codec.ErrIncomplete) {
		return false
	}
	if err != nil {
		var he *codec.HTTPError
		status := 500
		if errors.As(err, &he) {
			status = he.Status
		}
		s.m.handshakes.WithLabelValues(handshakeResult(status)).Inc()
		_, _ = gc.Discard(gc.InboundBuffered())
		_, _ = gc.Write(resp)
		sh.Refuse(c)
		return false
	}
	_, _ = gc.Discard(n)
	_, _ = gc.Write(resp)
	s.m.handshakes.WithLabelValues("ok").Inc()
	sh.Upgraded(c)
	if allowed, ok := s.tokenMatches(req); ok {
		c.SetAllowed(allowed)
	}
	sh.Send(c, s.hello)
	for _, m := range req.Matches {
		s.subscribe(sh, c, m)
	}
	return c.State() == shard.StateOpen
}

func handshakeResult(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden_origin"
	case 404:
		return "not_found"
	case 426:
		return "upgrade_required"
	case 431:
		return "headers_too_large"
	case 503:
		return "overloaded"
	}
	return "error_" + strconv.Itoa(status)
}

func (s *Server) helloJSON() []byte {
	b := make([]byte, 0, 64+len(s.opts.Node))
	b = append(b, `{"type":"hello","node":`...)
	b = strconv.AppendQuote(b, s.opts.Node)
	b = append(b, `,"heartbeat_s":`...)
	b = strconv.AppendInt(b, int64(s.opts.Shard.Heartbeat.Seconds()), 10)
	return append(b, '}')
}

// readFrames consumes every complete client frame.
func (s *Server) readFrames(sh *shard.Shard, c *shard.Conn) {
	gc := c.Net()
	buf, _ := gc.Peek(-1)
	off := 0
	for off < len(buf) && c.State() == shard.StateOpen {
		ev, n, err := c.Reader.Next(buf[off:])
		if err != nil {
			var ce *codec.CloseError
			if errors.As(err, &ce) {
				s.log.Debug("client protocol error", "code", ce.Code, "reason", ce.Reason)
				sh.Close(c, shard.ReasonForCode(ce.Code))
			} else {
				sh.Close(c, shard.ReasonProtocol)
			}
			break
		}
		if n == 0 {
			break
		}
		off += n
		switch ev.Kind {
		case codec.EventText:
			s.handleOp(sh, c, ev.Payload)
		case codec.EventBinary:
			s.sendError(sh, c, "bad_request", "binary messages are not accepted; send JSON text")
		case codec.EventPing:
			sh.Send(c, shard.ControlRaw(codec.PongFrame(ev.Payload)))
		case codec.EventClose:
			sh.Close(c, shard.ReasonNormal)
		}
	}
	// After a close the loop discards whatever is left; otherwise only what was parsed.
	// gnet's Discard(0) empties the whole inbound buffer, so it must never be called
	// with nothing consumed: the partial frame would be lost.
	if c.State() == shard.StateOpen {
		if off > 0 {
			_, _ = gc.Discard(off)
		}
	} else if c.State() != shard.StateClosed {
		_, _ = gc.Discard(gc.InboundBuffered())
	}
}

type clientOp struct {
	Op    string          `json:"op"`
	Match json.RawMessage `json:"match"`
}

// parseOp decodes one client message (PROTOCOL.md "Messages, client to server"). It
// returns the op ("subscribe" or "unsubscribe") and a valid match id, or the `error`
// code and message to answer with. It is pure, for FuzzClientOp.
func parseOp(payload []byte) (op, match, code, message string) {
	var o clientOp
	if err := json.Unmarshal(payload, &o); err != nil {
		return "", "", "bad_request", "message is not a JSON object"
	}
	switch o.Op {
	case "subscribe", "unsubscribe":
	case "":
		return "", "", "bad_request", `missing "op"`
	default:
		return "", "", "unknown_op", fmt.Sprintf("unknown op %.40q", o.Op)
	}
	if len(o.Match) == 0 || json.Unmarshal(o.Match, &match) != nil || !bus.ValidMatchID(match) {
		return "", "", "bad_request", `"match" must be 1 to 64 characters of A-Z a-z 0-9 _ -`
	}
	return o.Op, match, "", ""
}

// handleOp answers one client message.
func (s *Server) handleOp(sh *shard.Shard, c *shard.Conn, payload []byte) {
	switch sh.AllowOp(c) {
	case shard.OpRefused:
		s.sendError(sh, c, "rate_limited", "too many messages; slow down")
		return
	case shard.OpAbuse:
		sh.Close(c, shard.ReasonPolicy)
		return
	}
	op, match, code, message := parseOp(payload)
	if code != "" {
		s.sendError(sh, c, code, message)
		return
	}
	if op == "unsubscribe" {
		sh.Unsubscribe(c, match)
		return
	}
	s.subscribe(sh, c, match)
}

func (s *Server) subscribe(sh *shard.Shard, c *shard.Conn, match string) {
	if !c.Allowed(match) {
		s.log.Debug("subscription outside the token's matches", "match", match)
		sh.Close(c, shard.ReasonPolicy)
		return
	}
	switch sh.Subscribe(c, match) {
	case shard.SubTooMany:
		s.sendError(sh, c, "too_many_subscriptions",
			"at most "+strconv.Itoa(s.opts.Shard.MaxSubscriptions)+" subscriptions per connection")
	default:
		sh.Send(c, sh.Subscribed(match))
	}
}

func (s *Server) sendError(sh *shard.Shard, c *shard.Conn, code, msg string) {
	s.m.clientErrors.WithLabelValues(code).Inc()
	sh.Send(c, shard.ControlText(shard.ErrorJSON(code, msg)))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet fatal: " + fmt.Sprintf(f, a...)) }
