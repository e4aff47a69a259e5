package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"crease/server"
	"crease/server/servertest"
)

// TestHealthcheckProbesARealGateway: 0 for /healthz and /readyz of a running gateway,
// through the env variable as the container sets it, and through the built binary's exit
// code (the image's HEALTHCHECK runs exactly that).
func TestHealthcheckProbesARealGateway(t *testing.T) {
	s := servertest.Run(t, server.Options{})
	addr := s.HTTPAddr().String()
	for _, path := range []string{"/healthz", "/readyz"} {
		if err := runHealthcheck(context.Background(), []string{"--http-addr", addr, "--path", path}); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	t.Setenv("CREASE_HTTP_ADDR", addr)
	if err := runHealthcheck(context.Background(), nil); err != nil {
		t.Errorf("with CREASE_HTTP_ADDR=%s: %v", addr, err)
	}
	// ":PORT", as the image's default --http-addr is written, probes 127.0.0.1.
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(creaseBin(t), "healthcheck", "--http-addr", ":"+port).CombinedOutput()
	if err != nil {
		t.Errorf("crease healthcheck --http-addr :%s: %v %s", port, err, out)
	}
}

// TestHealthcheckFails: a non-200 answer, a closed port and bad flags are failures with
// a reason, and the binary exits 1.
func TestHealthcheckFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if err := runHealthcheck(context.Background(), []string{"--http-addr", addr}); err != nil {
		t.Fatalf("/healthz 200: %v", err)
	}
	err := runHealthcheck(context.Background(), []string{"--http-addr", addr, "--path", "/readyz"})
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("/readyz 503: got %v, want an error naming 503", err)
	}
	closed := servertest.FreeAddr(t)
	if err := runHealthcheck(context.Background(), []string{"--http-addr", closed}); err == nil {
		t.Errorf("closed port %s: no error", closed)
	}
	for _, args := range [][]string{
		{"--http-addr", "nonsense"},
		{"--http-addr", ":0"},
		{"--http-addr", addr, "--path", "healthz"},
		{"--http-addr", addr, "--timeout", "0s"},
	} {
		if err := runHealthcheck(context.Background(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	cmd := exec.Command(creaseBin(t), "healthcheck", "--http-addr", addr, "--path", "/readyz")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "503") {
		t.Errorf("binary against 503: err %v, output %q; want exit 1 naming 503", err, out)
	}
}
