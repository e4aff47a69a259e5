package redis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"crease/bus"
)

// Reconnect backoff of the connector and of a subscription whose Receive ended.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Bus is the Redis implementation of bus.Bus. Create it with New; all methods are safe
// for concurrent use.
type Bus struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	client    atomic.Pointer[clientBox] // nil until the first successful connect
	connected chan struct{}             // closed once client is set
	ready     atomic.Bool
	masterMu  sync.Mutex
	master    string // Sentinel: the master's address last seen (connect, then healthLoop)

	track      atomic.Pointer[bus.Tracker] // set by Start
	q          *handoff
	subs       *manager
	snaps      *snapCache
	views      viewers
	script     *rueidis.Lua
	histRead   *rueidis.Lua
	storedRead *rueidis.Lua
	pub        reasserter // the last delta this bus published of each match

	started atomic.Bool
	closed  atomic.Bool
}

type clientBox struct{ c rueidis.Client }

var (
	_ bus.Bus     = (*Bus)(nil)
	_ bus.Resumer = (*Bus)(nil)
)

// New validates opts, fills in defaults and returns a Bus. It tries to connect once
// before returning; if Redis is unreachable New still succeeds, Ready reports false and
// a background goroutine keeps retrying. Publisher calls wait for the connection (up to
// their context); Snapshot and Matches fail with ErrNotConnected meanwhile.
func New(opts Options) (*Bus, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("redis bus: registering metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		opts:       o,
		log:        o.Logger.With("component", "bus/redis"),
		m:          m,
		ctx:        ctx,
		cancel:     cancel,
		connected:  make(chan struct{}),
		q:          newHandoff(o.HandoffMessages, o.HandoffBytes),
		snaps:      newSnapCache(),
		script:     rueidis.NewLuaScript(publishScript),
		histRead:   rueidis.NewLuaScript(historyScript),
		storedRead: rueidis.NewLuaScript(storedScript),
	}
	b.subs = newManager(b)
	b.views.wake = make(chan struct{}, 1)
	if err := b.connect(); err != nil {
		b.log.Warn("redis unreachable, retrying in the background", "addrs", o.Addrs, "err", err)
		b.wg.Add(1)
		go b.connectLoop()
	}
	b.wg.Add(3)
	go b.healthLoop()
	go b.viewersLoop()
	go b.reassertLoop()
	return b, nil
}

// connect makes the rueidis client once. rueidis then reconnects by itself.
func (b *Bus) connect() error {
	c, err := rueidis.NewClient(b.clientOption())
	if err != nil {
		if c != nil {
			c.Close()
		}
		return err
	}
	b.client.Store(&clientBox{c: c})
	b.noteMaster(c)
	b.ready.Store(true)
	close(b.connected)
	return nil
}

// clientOption is the rueidis configuration of Options: standalone, cluster or
// Sentinel.
func (b *Bus) clientOption() rueidis.ClientOption {
	o := rueidis.ClientOption{
		InitAddress:  b.opts.Addrs,
		DisableCache: true, // no client-side caching: no CLIENT TRACKING, no invalidation channel
		// Standalone: the first address only; cluster: seeds, and rueidis finds the rest.
		ForceSingleClient: !b.opts.Cluster && b.opts.Sentinel == "",
	}
	if b.opts.Sentinel != "" {
		// InitAddress are the sentinels. rueidis asks them for the master, subscribes to
		// their events and, on +switch-master, dials the new master and closes the old
		// connection: every Receive on it ends and is retried on the new one (a
		// resubscribe, so a `resync`), every command is retried there.
		o.Sentinel = rueidis.SentinelOption{MasterSet: b.opts.Sentinel, TopologyRefreshInterval: b.opts.SentinelRefresh}
	}
	return o
}

func (b *Bus) connectLoop() {
	defer b.wg.Done()
	backoff := minBackoff
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if err := b.connect(); err == nil {
			b.log.Info("redis connected", "addrs", b.opts.Addrs)
			b.m.reconnects.Inc()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// cli returns the client or nil before the first connect.
func (b *Bus) cli() rueidis.Client {
	if box := b.client.Load(); box != nil {
		return box.c
	}
	return nil
}

// waitClient waits for the first connect; nil when ctx or the bus ends first.
func (b *Bus) waitClient(ctx context.Context) rueidis.Client {
	select {
	case <-b.connected:
		return b.cli()
	case <-ctx.Done():
		return nil
	case <-b.ctx.Done():
		return nil
	}
}

// healthLoop PINGs every node each HealthInterval: Ready is true while all answer.
func (b *Bus) healthLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		c := b.cli()
		if c == nil {
			continue
		}
		ok := b.pingAll(c)
		b.noteMaster(c)
		if was := b.ready.Swap(ok); was != ok {
			if ok {
				b.m.reconnects.Inc()
				b.log.Info("redis link up")
			} else {
				b.log.Warn("redis link down")
			}
		}
	}
}

// noteMaster logs and counts a change of the master Sentinel names.
func (b *Bus) noteMaster(c rueidis.Client) {
	if b.opts.Sentinel == "" {
		return
	}
	b.masterMu.Lock()
	defer b.masterMu.Unlock()
	for addr := range c.Nodes() { // the master only: the bus sends nothing to replicas
		switch b.master {
		case addr:
		case "":
			b.log.Info("redis master", "sentinel", b.opts.Sentinel, "addr", addr)
		default:
			b.m.masters.Inc()
			b.log.Warn("redis master changed (failover)", "sentinel", b.opts.Sentinel, "from", b.master, "to", addr)
		}
		b.master = addr
	}
}

func (b *Bus) pingAll(c rueidis.Client) bool {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.HealthInterval)
	defer cancel()
	for _, n := range c.Nodes() {
		if err := n.Do(ctx, n.B().Ping().Build()).Error(); err != nil {
			return false
		}
	}
	return true
}

// Ready reports whether the Redis link is up (the last health PING of every node was
// answered). It is false before the first connect.
func (b *Bus) Ready() bool { return b.ready.Load() && !b.closed.Load() }

// ConfirmsSubscriptions reports that each new subscription's feed starts with a Lost of
// its match (the confirmation): deltas published before it may have been missed. The
// gateway's history replay waits for it before reading a newly followed match.
func (b *Bus) ConfirmsSubscriptions() bool { return true }

// Close stops every goroutine, unsubscribes and closes the Redis connections. The sink
// gets no calls after Close returns.
func (b *Bus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.cancel()
	b.wg.Wait()
	if c := b.cli(); c != nil {
		c.Close()
	}
	return nil
}

// Keys and channels of PROTOCOL.md: every key of a match shares the {ID} hash tag.
func (b *Bus) channel(match string) string { return b.opts.Prefix + ":{" + match + "}" }
func (b *Bus) snapKey(match string) string { return b.channel(match) + ":snap" }
func (b *Bus) seqKey(match string) string  { return b.channel(match) + ":seq" }
func (b *Bus) infoKey(match string) string { return b.channel(match) + ":info" }
func (b *Bus) histKey(match string) string { return b.channel(match) + ":hist" }
func (b *Bus) journalKey(match string) string {
	return b.channel(match) + ":balls"
}
func (b *Bus) viewersKey(match string) string {
	return b.channel(match) + ":viewers"
}
func (b *Bus) matchesKey() string { return b.opts.Prefix + ":matches" }
