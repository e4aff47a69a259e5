// Package baseline holds what the baseline servers (bench/cmd/naive, bench/cmd/centrifuge)
// need besides their WebSocket: a listener that several processes can share
// (SO_REUSEPORT, for bench/cmd/matchday), and the REST snapshot and readiness the
// clients' algorithm and a load balancer expect, served from the publisher's Redis keys
// as crease serves them. Handlers run on net/http's goroutines.
package baseline

import (
	"net"
	"net/http"

	"github.com/redis/rueidis"

	"crease/internal/reuseport"
)

// Listen binds addr (TCP), with SO_REUSEPORT if reusePort, as the gateway does.
func Listen(addr string, reusePort bool) (net.Listener, error) {
	return reuseport.Listen(addr, reusePort)
}

// Handle adds GET /v1/matches/{id} (the snapshot stored at PREFIX:{ID}:snap, 404 when
// there is none) and GET /readyz (200) to mux.
func Handle(mux *http.ServeMux, rc rueidis.Client, prefix string) {
	mux.HandleFunc("GET /v1/matches/{id}", func(w http.ResponseWriter, r *http.Request) {
		raw, err := rc.Do(r.Context(), rc.B().Get().Key(prefix+":{"+r.PathValue("id")+"}:snap").Build()).AsBytes()
		if rueidis.IsRedisNil(err) {
			http.Error(w, "unknown match", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, "snapshot store unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
}
