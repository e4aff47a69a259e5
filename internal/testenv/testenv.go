// Package testenv decides, in one place, what a test does on a machine that lacks a tool
// it needs (redis-server, podman, haproxy, chromium, node, npm, prlimit): it skips,
// except under CI, where make test has installed everything (scripts/ensure-deps.sh) and
// a missing tool is a failure.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Missing skips t for what msg says this machine lacks, or fails t when CI is set.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: a failure, not a skip)")
	}
	t.Skip(msg + " (set CI=1 to make this a failure)")
}

// LookPath is the path of the command name on PATH. Where there is none it is Missing,
// with install saying how to get it.
func LookPath(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" not found: "+install)
	}
	return p
}
