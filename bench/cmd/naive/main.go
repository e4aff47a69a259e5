// Command naive is the baseline every Go tutorial builds: gorilla/websocket, a reader
// and a writer goroutine per connection, a buffered channel of 64 per connection (a
// full channel cuts the connection, as in gorilla's chat example), and one Redis
// subscription per match forwarding the delta text verbatim.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/rueidis"

	"crease/bench/internal/baseline"
)

type client struct {
	conn  *websocket.Conn
	send  chan []byte
	once  sync.Once
	dead  atomic.Bool
	match string
}

// shut closes send once. Only the match's subscription goroutine sends (under the read
// lock), and the reader shuts only after leaving the hub, so no send follows a close.
func (c *client) shut() {
	c.once.Do(func() {
		c.dead.Store(true)
		close(c.send)
	})
}

type hub struct {
	mu      sync.RWMutex
	matches map[string]map[*client]struct{}
	redis   rueidis.Client
	prefix  string
	cancels map[string]context.CancelFunc
}

func (h *hub) join(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.matches[c.match]
	if set == nil {
		set = map[*client]struct{}{}
		h.matches[c.match] = set
		ctx, cancel := context.WithCancel(context.Background())
		h.cancels[c.match] = cancel
		go h.subscribe(ctx, c.match)
	}
	set[c] = struct{}{}
}

func (h *hub) leave(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.matches[c.match]
	delete(set, c)
	if len(set) == 0 && set != nil {
		delete(h.matches, c.match)
		h.cancels[c.match]()
		delete(h.cancels, c.match)
	}
}

// subscribe holds one Redis subscription for match until its last client leaves.
func (h *hub) subscribe(ctx context.Context, match string) {
	ch := h.prefix + ":{" + match + "}"
	for ctx.Err() == nil {
		err := h.redis.Receive(ctx, h.redis.B().Subscribe().Channel(ch).Build(), func(m rueidis.PubSubMessage) {
			data := []byte(m.Message)
			h.mu.RLock()
			for c := range h.matches[match] {
				if c.dead.Load() {
					continue
				}
				select {
				case c.send <- data:
				default:
					c.shut()
				}
			}
			h.mu.RUnlock()
		})
		if err != nil && ctx.Err() == nil {
			log.Printf("naive: subscribe %s: %v", ch, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (WebSocket at /ws, snapshots at /v1/matches/{id}, /readyz)")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	prefix := flag.String("prefix", "crease", "Redis key prefix")
	node := flag.String("node", "naive", "name sent in hello")
	reusePort := flag.Bool("reuse-port", false, "bind with SO_REUSEPORT, so that several processes share the port (bench/cmd/matchday)")
	flag.Parse()
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*redisAddr}, DisableCache: true})
	if err != nil {
		log.Fatalf("naive: redis: %v", err)
	}
	h := &hub{matches: map[string]map[*client]struct{}{}, cancels: map[string]context.CancelFunc{}, redis: rc, prefix: *prefix}
	hello := []byte(`{"type":"hello","node":"` + *node + `","heartbeat_s":0}`)
	// The snapshot the publisher stored and /readyz, as crease serves them, for the
	// clients' resync: what a tutorial server next to the publisher's store would do.
	baseline.Handle(http.DefaultServeMux, rc, *prefix)
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		match := r.URL.Query().Get("match")
		if match == "" || strings.Contains(match, ",") {
			http.Error(w, "one match please", http.StatusBadRequest)
			return
		}
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{conn: conn, send: make(chan []byte, 64), match: match}
		c.send <- hello
		c.send <- []byte(`{"type":"subscribed","match":"` + match + `"}`)
		h.join(c)
		go writer(c)
		go reader(h, c)
	})
	ln, err := baseline.Listen(*addr, *reusePort)
	if err != nil {
		log.Fatalf("naive: %v", err)
	}
	fmt.Fprintf(os.Stderr, "naive: pid %d listening on %s\n", os.Getpid(), *addr)
	log.Fatal(http.Serve(ln, nil))
}

func reader(h *hub, c *client) {
	defer func() {
		h.leave(c)
		c.shut()
	}()
	c.conn.SetReadLimit(4096)
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

func writer(c *client) {
	defer c.conn.Close()
	for m := range c.send {
		_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.conn.WriteMessage(websocket.TextMessage, m); err != nil {
			return
		}
	}
	_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4008, "slow"))
}
