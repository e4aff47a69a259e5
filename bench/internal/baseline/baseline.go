// Package baseline holds what the baseline servers (bench/cmd/naive, bench/cmd/centrifuge)
// need besides their WebSocket: a listener that several processes can share
// (SO_REUSEPORT, for bench/cmd/matchday), and the REST snapshot and readiness the
// clients' algorithm and a load balancer expect, served from the publisher's Redis keys
// as crease serves them. Handlers run on net/http's goroutines.
package baseline

import (
	"context"
	"net"
	"net/http"
	"syscall"

	"github.com/redis/rueidis"
	"golang.org/x/sys/unix"
)

// Listen binds addr (TCP), with SO_REUSEPORT if reusePort.
func Listen(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
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
