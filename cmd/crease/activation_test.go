package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"crease/server/servertest"
)

// activated starts `crease serve` the way systemd's socket activation does: the
// listening sockets as descriptors 3 and 4, LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID
// (the shell sets it to its own pid, which exec keeps, as systemd sets it after fork).
func activated(t *testing.T, ws, http *os.File, names string, args ...string) *proc {
	t.Helper()
	argv := append([]string{"/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, creaseBin(t), "serve"}, args...)
	c := startChildWith(t, func(cmd *exec.Cmd) {
		cmd.Env = append(cmd.Env, "LISTEN_FDS=2", "LISTEN_FDNAMES="+names)
		cmd.ExtraFiles = []*os.File{ws, http}
	}, argv...)
	return &proc{child: c}
}

func listenerFile(t *testing.T, ln net.Listener) *os.File {
	t.Helper()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSocketActivation: crease serve takes its listening sockets from LISTEN_FDS (by
// name, in either order) and serves them, not --ws-addr and --http-addr. Stopped with
// SIGTERM and started again on the same sockets, as systemd restarts an activated
// service, it refuses nobody in between: a client that connects while no process runs
// is queued by the kernel and upgraded by the next one.
func TestSocketActivation(t *testing.T) {
	wsLn, httpLn := servertest.Listen(t), servertest.Listen(t)
	wsAddr, httpAddr := wsLn.Addr().String(), httpLn.Addr().String()
	unused := servertest.FreeAddr(t)

	// The HTTP socket first: the names decide.
	p := activated(t, listenerFile(t, httpLn), listenerFile(t, wsLn), "http:ws",
		"--loops=1", "--restart-gap=1s", "--drain-window=500ms", "--log-level=info", "--ws-addr="+unused)
	servertest.Eventually(t, 15*time.Second, servertest.Cond("/readyz on the inherited HTTP socket", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}))
	c, resp, err := servertest.DialWS(wsAddr, "/ws", nil, "")
	if c == nil {
		t.Fatalf("WebSocket on the inherited socket: %v %v", resp, err)
	}
	if f, err := c.Next(time.Now().Add(5 * time.Second)); err != nil || f.Type != "hello" {
		t.Fatalf("first frame %s %v", f.Raw, err)
	}
	if nc, err := net.DialTimeout("tcp", unused, time.Second); err == nil {
		nc.Close()
		t.Fatalf("--ws-addr %s bound although a WebSocket socket was inherited", unused)
	}
	if !strings.Contains(p.out.String(), "socket activation") {
		t.Errorf("no log line about the inherited sockets")
	}

	p.signal(t, syscall.SIGTERM)
	if f, err := c.Next(time.Now().Add(5 * time.Second)); err != nil || f.Type != "reconnect" || f.AfterMS < 1000 {
		t.Fatalf("drain: %s %v, want reconnect with after_ms >= 1000 (the restart gap)", f.Raw, err)
	}
	c.Close()
	p.waitExit(t, 10*time.Second)

	// No process: the socket still listens, the connection waits.
	nc := servertest.SendRaw(t, wsAddr, servertest.UpgradeRequest("/ws"), "refused between the two processes")

	activated(t, listenerFile(t, wsLn), listenerFile(t, httpLn), "", "--loops=1", "--log-level=warn")
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	r, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || r.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the client that waited through the restart: %v %v", r, err)
	}
}

// TestSocketActivationRefusesWhatItCannotUse: more sockets than crease serves, or a name
// it does not know, is an error at start, not a socket silently left unserved; LISTEN_*
// meant for another process (LISTEN_PID not ours) is ignored.
func TestSocketActivationRefusesWhatItCannotUse(t *testing.T) {
	for _, tc := range []struct{ name, env, want string }{
		{"three sockets", "LISTEN_FDS=3", "at most two sockets"},
		{"unknown name", "LISTEN_FDNAMES=ws:metrics", "neither ws nor http"},
		{"twice ws", "LISTEN_FDNAMES=ws:ws", "two sockets named ws"},
		{"bad count", "LISTEN_FDS=two", "not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, ln2 := servertest.Listen(t), servertest.Listen(t)
			cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, creaseBin(t), "serve", "--loops=1",
				"--ws-addr="+servertest.FreeAddr(t), "--http-addr="+servertest.FreeAddr(t))
			cmd.Env = append(os.Environ(), "LISTEN_FDS=2", "LISTEN_FDNAMES=ws:http", tc.env)
			cmd.ExtraFiles = []*os.File{listenerFile(t, ln), listenerFile(t, ln2)}
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, output %q; want an error naming %q", err, out, tc.want)
			}
		})
	}
	t.Run("another process's", func(t *testing.T) {
		t.Setenv("LISTEN_PID", "1")
		t.Setenv("LISTEN_FDS", "2")
		p := startCrease(t, nil, "serve", "--loops=1")
		if c, resp, err := servertest.DialWS(p.ws, "/ws", nil, ""); c == nil {
			t.Fatalf("--ws-addr not served: %v %v", resp, err)
		} else {
			c.Close()
		}
	})
}
