package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// runBench runs the benchmark harness, which lives in its own Go module (bench/) so
// that the baselines' dependencies stay out of the gateway. Arguments are passed on.
func runBench(ctx context.Context, args []string) error {
	dir, err := findBenchDir()
	if err != nil {
		return err
	}
	c := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/harness"}, args...)...)
	c.Dir = dir
	c.Stdout, c.Stderr, c.Stdin = os.Stdout, os.Stderr, os.Stdin
	return c.Run()
}

// findBenchDir looks for the bench module from the working directory upwards, or in
// $CREASE_BENCH_DIR.
func findBenchDir() (string, error) {
	if d := os.Getenv("CREASE_BENCH_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "bench", "go.mod")); err == nil {
			return filepath.Join(d, "bench"), nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return "", errors.New(fmt.Sprint("crease bench: run it from the crease source tree (bench/go.mod not found above ", wd, "), or set CREASE_BENCH_DIR"))
}
