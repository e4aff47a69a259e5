// Command centrifuge is the off-the-shelf baseline: a server on
// github.com/centrifugal/centrifuge with its Redis broker. A client connects with
// `/ws?match=ID`, sends the connect command of the JSON protocol, and is subscribed to
// channel ID on the server side; publishers publish the crease delta JSON as the
// publication data through the same broker (publisher --target centrifuge, or
// publisher --relay to forward what a crease publisher sends). It also serves the
// publisher's snapshots (/v1/matches/{id}) and /readyz, and can share its port with
// other processes (--reuse-port).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/centrifugal/centrifuge"
	"github.com/redis/rueidis"

	"crease/bench/internal/baseline"
)

type matchKey struct{}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (WebSocket at /ws, snapshots at /v1/matches/{id}, /readyz)")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	reusePort := flag.Bool("reuse-port", false, "bind with SO_REUSEPORT, so that several processes share the port (bench/cmd/matchday)")
	_ = flag.String("node", "", "ignored: centrifuge names its nodes itself")
	prefix := flag.String("prefix", "crease", "key prefix of the snapshots (publisher --relay)")
	flag.Parse()

	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError})
	if err != nil {
		log.Fatal(err)
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: *redisAddr})
	if err != nil {
		log.Fatal(err)
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		log.Fatal(err)
	}
	node.SetBroker(broker)
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		match, _ := ctx.Value(matchKey{}).(string)
		reply := centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}
		if match != "" {
			reply.Subscriptions = map[string]centrifuge.SubscribeOptions{match: {}}
		}
		return reply, nil
	})
	node.OnConnect(func(*centrifuge.Client) {})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		CheckOrigin: func(*http.Request) bool { return true },
	})
	http.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The match travels from the URL to OnConnecting through the request context.
		ctx := context.WithValue(r.Context(), matchKey{}, r.URL.Query().Get("match"))
		ws.ServeHTTP(w, r.WithContext(ctx))
	}))
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*redisAddr}, DisableCache: true})
	if err != nil {
		log.Fatal(err)
	}
	baseline.Handle(http.DefaultServeMux, rc, *prefix)
	ln, err := baseline.Listen(*addr, *reusePort)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "centrifuge: pid %d listening on %s\n", os.Getpid(), *addr)
	log.Fatal(http.Serve(ln, nil))
}
