package server

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"crease/shard"
)

// Handing accepted sockets to gnet's loops.
//
// gnet v2.9.7's public way in, Engine.Register(net.Conn), costs every connection a
// net.Conn (a netFD registered with Go's poller, dup(2)ed, then closed), a goroutine of
// gnet's pool, two channels, a round trip of the peer's address through its text form
// and the resolver, and keeps the net.Conn's local address besides a re-parsed remote
// one: ~110 B more live and ~1 KB of garbage per connection than gnet's own acceptor
// (bench/analysis.md). gnet's acceptor makes a connection with newStreamConn and opens
// it with register0 on the loop's goroutine; crease calls those two functions of gnet's
// directly, on the loop (through Execute), with the descriptor accept4(2) returned, the
// peer's address and one local address shared by every connection.
//
// They are gnet internals, linked by name: the declarations below must match gnet
// v2.9.7's exactly. TestGnetInternalsPinned fails as soon as go.mod names another gnet
// version, so that they are checked against its source before an upgrade.

//go:linkname gnetNewStreamConn github.com/panjf2000/gnet/v2.newStreamConn
func gnetNewStreamConn(proto string, fd int, el unsafe.Pointer, sa unix.Sockaddr, localAddr, remoteAddr net.Addr) unsafe.Pointer

//go:linkname gnetRegister0 github.com/panjf2000/gnet/v2.(*eventloop).register0
func gnetRegister0(el unsafe.Pointer, c unsafe.Pointer) error

// gnetVersion is the gnet release whose internals the declarations above match.
const (
	gnetModule  = "github.com/panjf2000/gnet/v2"
	gnetVersion = "v2.9.7"
)

// gnetLoopType is the dynamic type of gnet's EventLoop values in that release.
const gnetLoopType = "*gnet.eventloop"

// eventLoopPointer returns the *gnet.eventloop inside an EventLoop interface value.
func eventLoopPointer(loop gnet.EventLoop) (unsafe.Pointer, error) {
	if t := reflect.TypeOf(loop); t == nil || t.String() != gnetLoopType {
		return nil, fmt.Errorf("server: gnet event loop is %v, not %s (gnet %s): see enroll_linux.go", t, gnetLoopType, gnetVersion)
	}
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&loop))[1], nil
}

// inboxes are the loops' queues of accepted connections; the accept loop deals
// connections to them in turn.
type inboxes struct {
	boxes []*inbox
	next  int
}

// inbox holds connections accepted for one loop until the loop enrolls them. The accept
// loop appends and wakes the loop with one Execute per batch, however many arrive
// before the loop runs it, so a storm costs the loop one task per wake-up, not one per
// connection, and allocates nothing per connection.
type inbox struct {
	s     *Server
	sh    *shard.Shard
	el    unsafe.Pointer // the loop's *gnet.eventloop
	local net.Addr       // the listener's address, shared as every connection's LocalAddr
	run   gnet.Runnable

	mu     sync.Mutex
	queue  []pending
	spare  []pending // the previous batch's array, for the next one
	posted bool      // a run is queued on the loop and has not taken the queue yet
	closed bool
}

// newInboxes makes one inbox per loop. It runs on the accept loop, after Start has
// reached every loop.
func (s *Server) newInboxes() (*inboxes, error) {
	in := &inboxes{}
	var err error
	s.eachShard(func(sh *shard.Shard) {
		el, e := eventLoopPointer(sh.Loop())
		if e != nil {
			err = e
			return
		}
		b := &inbox{s: s, sh: sh, el: el, local: s.ln.Addr()}
		b.run = gnet.RunnableFunc(func(context.Context) error { b.enroll(); return nil })
		in.boxes = append(in.boxes, b)
	})
	if err == nil && len(in.boxes) == 0 {
		err = fmt.Errorf("server: no event loop to enroll connections on")
	}
	return in, err
}

// post hands p to the next loop; false if the loops are gone (shutdown).
func (in *inboxes) post(p pending) bool {
	b := in.boxes[in.next]
	if in.next++; in.next == len(in.boxes) {
		in.next = 0
	}
	return b.post(p)
}

// close closes the connections no loop has taken yet; later posts fail.
func (in *inboxes) close() {
	for _, b := range in.boxes {
		b.shut()
	}
}

func (b *inbox) post(p pending) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.queue = append(b.queue, p)
	wake := !b.posted
	b.posted = true
	b.mu.Unlock()
	if wake {
		if err := b.sh.Loop().Execute(context.Background(), b.run); err != nil {
			b.shut() // the engine is shutting down
		}
	}
	return true
}

// shut closes what is queued and refuses further posts.
func (b *inbox) shut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for i, p := range b.queue {
		p.close()
		b.s.open.Add(-1)
		b.queue[i] = pending{}
	}
	b.queue = b.queue[:0]
}

// enroll opens every queued connection on this loop: OnOpen runs for each, inside
// register0. It runs on the loop.
func (b *inbox) enroll() {
	b.mu.Lock()
	batch := b.queue
	b.queue, b.spare = b.spare[:0], nil
	b.posted = false
	b.mu.Unlock()
	for i, p := range batch {
		// The sockaddr is gnet's for UDP only; a TCP connection never reads it.
		var peer net.Addr
		if p.peer != nil {
			peer = p.peer
		}
		c := gnetNewStreamConn("tcp", p.fd, b.el, nil, b.local, peer)
		// register0 fails only before OnOpen (adding the socket to epoll), and then has
		// closed it; a refusal from OnOpen itself is a close, reported through OnClose.
		if err := gnetRegister0(b.el, c); err != nil {
			b.s.open.Add(-1)
			b.s.m.acceptErrors.WithLabelValues("register").Inc()
		}
		batch[i] = pending{}
	}
	b.mu.Lock()
	b.spare = batch[:0]
	b.mu.Unlock()
}
