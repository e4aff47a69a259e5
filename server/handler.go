package server

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/panjf2000/gnet/v2"

	"crease/codec"
	"crease/shard"
	"crease/wire"
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
	if isLoopProbe(gc) {
		return nil, gnet.Close // opened only so that this loop has its shard (reachEveryLoop)
	}
	gc.SetContext(sh.Open(gc))
	return nil, gnet.None
}

// OnClose runs on the connection's loop after gnet closed it.
func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if gc.LocalAddr() != nil && gc.LocalAddr().Network() == "unix" {
		return gnet.None // the start-up probe: never counted in open
	}
	if isLoopProbe(gc) {
		return gnet.None
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
// is open and frames may follow. The 101 answer, `hello` and the answers to the
// subscriptions of the request go out in one write, built in the loop's scratch buffer.
func (s *Server) handshake(sh *shard.Shard, c *shard.Conn) bool {
	gc := c.Net()
	in, _ := gc.Peek(-1)
	scratch := &s.scratch[sh.Index()]
	n, resp, req, err := s.upgrader.Upgrade(in, scratch.buf[:0])
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
		scratch.buf = resp[:0]
		sh.Refuse(c)
		return false
	}
	_, _ = gc.Discard(n)
	s.m.handshakesOK.Inc()
	sh.Upgraded(c)
	if req.CatchUp {
		sh.SetCatchUp(c)
	}
	if claims, ok := req.Auth.(*tokenClaims); ok {
		c.SetToken(claims.Matches, claims.ExpiresAt.Time)
	}
	frames := append(scratch.frames[:0], s.hello)
	for _, m := range req.Matches {
		if f := s.subscribe(sh, c, m, nil); f != nil {
			frames = append(frames, f)
		}
	}
	scratch.buf = sh.Greet(c, resp, frames)
	clear(frames)
	scratch.frames = frames[:0]
	return c.State() == shard.StateOpen
}

// loopScratch is what one loop reuses from handshake to handshake; only that loop
// touches it.
type loopScratch struct {
	buf    []byte
	frames []*shard.Frame
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
				sh.Close(c, wire.ReasonForCode(ce.Code))
			} else {
				sh.Close(c, wire.ReasonProtocol)
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
			s.sendError(sh, c, wire.CodeBadRequest, "", "binary messages are not accepted; send JSON text")
		case codec.EventPing:
			sh.Send(c, shard.ControlRaw(codec.PongFrame(ev.Payload)))
		case codec.EventClose:
			sh.Close(c, wire.ReasonNormal)
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

// handleOp answers one client message. The op bucket is spent before anything else,
// bad messages included; the op is parsed first only so that `rate_limited` can name
// its match.
func (s *Server) handleOp(sh *shard.Shard, c *shard.Conn, payload []byte) {
	op, code, message := parseOp(payload)
	switch sh.AllowOp(c) {
	case shard.OpRefused:
		s.sendError(sh, c, wire.CodeRateLimited, op.Match, "over "+s.opRateText()+"; slow down")
		return
	case shard.OpFlood:
		s.log.Debug("client op flood", "loop", sh.Index())
		sh.Close(c, wire.ReasonOpFlood)
		return
	}
	if code != "" {
		s.sendError(sh, c, code, op.Match, message) // op.Match: "" unless the message named a valid match
		return
	}
	switch op.Op {
	case "unsubscribe":
		sh.Unsubscribe(c, op.Match)
	case "subscribe":
		var since *shard.Since
		if op.HasSince {
			since = &op.Since
		}
		if f := s.subscribe(sh, c, op.Match, since); f != nil {
			sh.Send(c, f)
		}
	case "auth":
		s.handleAuth(sh, c, op.Token)
	}
}

// opRateText describes the op limit for `rate_limited` messages.
func (s *Server) opRateText() string {
	return strconv.FormatFloat(s.opts.Shard.OpRate, 'g', -1, 64) + " ops per second (burst " +
		strconv.Itoa(s.opts.Shard.OpBurst) + ")"
}

// subscribe adds c to match's subscribers and returns the answer: `subscribed`, or the
// `error` that refuses it; nil when the shard answers itself. since is the subscribe's
// position, nil without one: the shard then answers once the replay is known
// (shard.SubscribeSince), and a repeat while it waits right after that answer
// (shard.Resubscribed).
func (s *Server) subscribe(sh *shard.Shard, c *shard.Conn, match string, since *shard.Since) *shard.Frame {
	if !c.Allowed(match) {
		return s.errorFrame(wire.CodeForbidden, match, "the token does not allow match "+match)
	}
	var res shard.SubResult
	if since != nil {
		res = sh.SubscribeSince(c, match, *since)
	} else {
		res = sh.Subscribe(c, match)
	}
	switch {
	case res == shard.SubTooMany:
		return s.errorFrame(wire.CodeTooManySubscriptions, match,
			"at most "+strconv.Itoa(s.opts.Shard.MaxSubscriptions)+" subscriptions per connection")
	case res == shard.SubAlready:
		return sh.Resubscribed(c, match, since)
	case since != nil:
		return nil
	}
	return sh.SubscribedFrame(match)
}

// sendError answers a refused request with `error`; match is "" when none is concerned.
func (s *Server) sendError(sh *shard.Shard, c *shard.Conn, code wire.ErrorCode, match, msg string) {
	sh.Send(c, s.errorFrame(code, match, msg))
}

// errorFrame is an `error` frame, counted as sent.
func (s *Server) errorFrame(code wire.ErrorCode, match, msg string) *shard.Frame {
	s.m.clientErrors.WithLabelValues(string(code)).Inc()
	return shard.ControlText(wire.Error(code, match, msg))
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet fatal: " + fmt.Sprintf(f, a...)) }
