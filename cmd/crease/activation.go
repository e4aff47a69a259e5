package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Socket activation (sd_listen_fds(3)): systemd, or any supervisor that keeps the
// gateway's listening sockets open across its restarts, passes them as descriptors 3,
// 4, ... with LISTEN_PID (this process), LISTEN_FDS (how many) and LISTEN_FDNAMES (their
// names, colon-separated; FileDescriptorName= in a .socket unit). A socket named "ws"
// becomes the WebSocket listener and one named "http" the HTTP listener; unnamed ones
// (systemd names them after the unit) are taken in that order. An inherited socket
// replaces --ws-addr or --http-addr.

// listenFDsStart is SD_LISTEN_FDS_START.
const listenFDsStart = 3

// activationListeners returns the sockets passed to this process, if any, and removes
// the variables from the environment so that no child takes them for its own.
func activationListeners() (ws, http *os.File, err error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k)
	}
	if fds == "" || pid != strconv.Itoa(os.Getpid()) {
		return nil, nil, nil // none, or meant for another process
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, nil, fmt.Errorf("LISTEN_FDS=%q: not a count of descriptors", fds)
	}
	if n > 2 {
		return nil, nil, fmt.Errorf("LISTEN_FDS=%d: crease takes at most two sockets (ws, then http)", n)
	}
	var named []string
	if names != "" {
		named = strings.Split(names, ":")
	}
	byName := false
	for _, nm := range named {
		byName = byName || nm == "ws" || nm == "http"
	}
	for i := range n {
		fd := listenFDsStart + i
		syscall.CloseOnExec(fd)
		role := [2]string{"ws", "http"}[i]
		if byName {
			if i >= len(named) || (named[i] != "ws" && named[i] != "http") {
				return nil, nil, fmt.Errorf("LISTEN_FDNAMES=%q: socket %d is neither ws nor http", names, i)
			}
			role = named[i]
		}
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)+"("+role+")")
		if role == "ws" && ws == nil {
			ws = f
		} else if role == "http" && http == nil {
			http = f
		} else {
			return nil, nil, fmt.Errorf("LISTEN_FDNAMES=%q: two sockets named %s", names, role)
		}
	}
	return ws, http, nil
}
