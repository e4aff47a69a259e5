// Package repo finds the crease repository the benchmarks run in, builds its commands,
// and describes the commit and the machine for the reports.
package repo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"crease/bench/internal/procs"
)

// Root finds the repository (the directory of go.mod of module crease) from the working
// directory up.
func Root() (string, error) {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module crease\n") {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("run me inside the crease repository (no go.mod of module crease above %s)", dir)
		}
	}
}

// GoBuild builds pkg of the module in dir into out, and returns the compiler's output.
func GoBuild(dir, out, pkg string) (string, error) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// Head is the short commit of dir, "?" if unknown.
func Head(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// Machine describes the CPU, cores, memory and kernel.
func Machine() string {
	model := "?"
	if v, ok := procs.ProcLine("/proc/cpuinfo", "model name"); ok {
		if _, v, ok := strings.Cut(v, ":"); ok {
			model = strings.TrimSpace(v)
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			var kb float64
			fmt.Sscan(f[1], &kb)
			mem = fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("%s, %d cores, %s memory, %s", model, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)))
}

// MemAvailable is the machine's available memory (/proc/meminfo), bytes; 0 if unknown.
func MemAvailable() int64 {
	v, _ := procs.ProcLine("/proc/meminfo", "MemAvailable:")
	var kb int64
	fmt.Sscan(v, &kb)
	return kb * 1024
}
