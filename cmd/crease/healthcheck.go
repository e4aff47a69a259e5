package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"crease/server"
)

const healthcheckUsage = `Probes the gateway's HTTP listener on this host: exits 0 when GET --path answers 200,
1 otherwise (with the reason on stderr). It is the container image's HEALTHCHECK, since
an image FROM scratch has no shell and no curl. --http-addr is read like the gateway's
(flag or CREASE_HTTP_ADDR), so in the gateway's environment the probe follows it; a host
that is empty or unspecified (":8081", "0.0.0.0:8081") is probed on 127.0.0.1.`

// runHealthcheck is `crease healthcheck`: one GET, no retries (the orchestrator retries).
func runHealthcheck(ctx context.Context, args []string) error {
	cmd := newCommand("healthcheck", healthcheckUsage)
	addr := cmd.fs.String("http-addr", server.DefaultHTTPAddr, "the gateway's HTTP listen address")
	path := cmd.fs.String("path", "/healthz", "path to probe: /healthz (liveness) or /readyz (readiness)")
	timeout := cmd.fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if !strings.HasPrefix(*path, "/") {
		return fmt.Errorf("crease healthcheck: --path %q must start with /", *path)
	}
	if *timeout <= 0 {
		return fmt.Errorf("crease healthcheck: --timeout must be positive (got %v)", *timeout)
	}
	target, err := probeURL(*addr, *path)
	if err != nil {
		return fmt.Errorf("crease healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("crease healthcheck: %w", err)
	}
	// No proxy from the environment: the probe is for this host's own listener.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("crease healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("crease healthcheck: GET %s: %s", target, resp.Status)
	}
	return nil
}

// probeURL turns a listen address into the URL of path on this host.
func probeURL(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--http-addr %q: %w", addr, err)
	}
	if port == "" || port == "0" {
		return "", errors.New("--http-addr " + addr + ": needs a fixed port")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
