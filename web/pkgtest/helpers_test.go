package pkgtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"crease/ingest"
	"crease/internal/npmtest"
)

// followSetup packs the package into a scratch directory holding testdata/follow.mjs,
// and loads the embedded matches for it to follow.
func followSetup(t *testing.T) (dir string, matches []*ingest.Match) {
	t.Helper()
	p := npmtest.Pack(t)
	script, err := os.ReadFile("testdata/follow.mjs")
	if err != nil {
		t.Fatal(err)
	}
	dir = npmtest.Scratch(t, p, map[string]string{"follow.mjs": string(script)})
	matches, err = ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	return dir, matches
}

// nodeProc is a started Node process: its stdin to answer it, its stdout to read, and
// its stderr kept for failure messages.
type nodeProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *strings.Builder
}

// startNode runs Node with args in dir until ctx ends.
func startNode(t *testing.T, ctx context.Context, dir string, args ...string) *nodeProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, npmtest.Node(t), args...)
	cmd.Dir = dir
	n := &nodeProc{cmd: cmd, stderr: &strings.Builder{}}
	n.stdin, _ = cmd.StdinPipe()
	n.stdout, _ = cmd.StdoutPipe()
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

// jsonLines sends each line of r that decodes as a T, and closes when r ends.
func jsonLines[T any](r io.Reader, buffer int) <-chan T {
	lines := make(chan T, buffer)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<22)
		for sc.Scan() {
			var l T
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	return lines
}
