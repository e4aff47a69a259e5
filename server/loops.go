package server

import (
	"context"
	"fmt"
	"net"

	"github.com/panjf2000/gnet/v2"

	"crease/shard"
)

// Each gnet event loop has one shard, made by the first connection the loop opens. The
// gateway opens one on every loop at start (reachEveryLoop), so that every loop's
// shard, ticks and metrics (crease_connections, crease_loop_lag_seconds) exist before
// any client connects: a fresh gateway's dashboard shows zeros, not "no data".

// shardFor returns (creating on first use) the shard of a loop. It runs on that loop, in
// every OnOpen, OnTraffic and OnClose, so the lookup takes no lock: byLoop is a map
// written once per loop (copied on write, under shardsMu) and read atomically.
func (s *Server) shardFor(loop gnet.EventLoop) *shard.Shard {
	if sh := (*s.byLoop.Load())[loop]; sh != nil {
		return sh
	}
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	old := *s.byLoop.Load()
	if sh := old[loop]; sh != nil {
		return sh
	}
	idx := int(s.nShards.Load())
	hooks := shard.Hooks{
		Interest:     s.dispatch.interest,
		Closed:       s.connClosed,
		TokenExpired: s.tokenExpired,
	}
	if s.recovery != nil {
		hooks.History = s.recovery
	}
	sh := shard.New(idx, loop, s.opts.Shard, hooks, s.m.loop(idx))
	next := make(map[gnet.EventLoop]*shard.Shard, len(old)+1)
	for l, x := range old {
		next[l] = x
	}
	next[loop] = sh
	s.shards[idx].Store(sh)
	s.nShards.Add(1)
	s.byLoop.Store(&next)
	return sh
}

func (s *Server) eachShard(fn func(*shard.Shard)) {
	n := int(s.nShards.Load())
	for i := 0; i < n; i++ {
		if sh := s.shards[i].Load(); sh != nil {
			fn(sh)
		}
	}
}

// onLoop runs fn on sh's loop.
func onLoop(sh *shard.Shard, fn func()) {
	_ = sh.Loop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { fn(); return nil }))
}

// loopProbe is the gnet context (Conn.Context) of a connection opened only to reach a
// loop.
type loopProbe struct{}

// isLoopProbe reports whether gc was opened by reachEveryLoop. It runs on gc's loop.
func isLoopProbe(gc gnet.Conn) bool {
	_, ok := gc.Context().(loopProbe)
	return ok
}

// reachEveryLoop opens loopback connections and hands them to gnet until every loop
// has opened one (and so made its shard). gnet picks a connection's loop by hashing its
// remote address, so each probe, from a new ephemeral port, lands on a loop at random.
// It runs on Start's goroutine.
func (s *Server) reachEveryLoop() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx := gnet.NewContext(context.Background(), loopProbe{})
	for i := 0; int(s.nShards.Load()) < s.opts.Loops; i++ {
		if i == 100*s.opts.Loops {
			return fmt.Errorf("only %d of %d event loops took a connection", s.nShards.Load(), s.opts.Loops)
		}
		if err := s.probeOnce(ctx, ln); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) probeOnce(ctx context.Context, ln net.Listener) error {
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer out.Close()
	in, err := ln.Accept()
	if err != nil {
		return err
	}
	res, err := s.engine.Register(gnet.NewNetConnContext(ctx, in))
	if err != nil {
		in.Close()
		return err
	}
	// gnet has duplicated the descriptor and closes in itself; the loop has run OnOpen
	// (and made its shard) once the result arrives.
	if r := <-res; r.Err != nil {
		return r.Err
	}
	return nil
}
