package container_test

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"crease/internal/testenv"
)

// busybox is a statically linked busybox (Debian's busybox-static), the shell of the
// stand-in builder; the test skips without it (fails when CI is set).
func busybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			static = static && prog.Type != elf.PT_INTERP
		}
		f.Close()
		if static {
			return p
		}
	}
	testenv.Missing(t, "no static busybox: apt-get install -y busybox-static (make test does, via scripts/ensure-deps.sh)")
	return ""
}

// standInBuilder is a local image that can stand in for docker.io/library/golang, which
// this machine cannot pull (no registry is reachable): this host's Go toolchain, a
// static busybox for the RUN steps' shell, and the CA certificates (go mod download
// reaches the module proxy). It is kept in podman's storage, by Go version, so that
// later runs reuse it.
func standInBuilder(t *testing.T, pm string) string {
	t.Helper()
	tag := "localhost/crease-test-golang:" + strings.TrimPrefix(runtime.Version(), "go")
	if _, err := run(t, pm, "image", "exists", tag); err == nil {
		return tag
	}
	bb := busybox(t)
	ctx := t.TempDir()
	for _, d := range []string{"bin", "etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][]string{
		{"cp", bb, filepath.Join(ctx, "bin", "busybox")},
		{"cp", "/etc/ssl/certs/ca-certificates.crt", filepath.Join(ctx, "etc/ssl/certs/")},
		{"cp", "-a", runtime.GOROOT(), filepath.Join(ctx, "go")},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	for _, applet := range []string{"sh", "mkdir", "chmod", "cp"} {
		if err := os.Symlink("busybox", filepath.Join(ctx, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	containerfile := `FROM scratch
COPY bin/ /bin/
COPY etc/ /etc/
COPY go/ /usr/local/go/
ENV PATH=/usr/local/go/bin:/bin GOTOOLCHAIN=local GOMODCACHE=/gomodcache GOCACHE=/gocache HOME=/tmp
`
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, pm, "build", "-q", "-t", tag, ctx); err != nil {
		t.Fatalf("building the stand-in builder: %v", err)
	}
	return tag
}

// TestMultiStageDockerfile builds the repository's Dockerfile, the one users build, with
// its golang stage replaced by the stand-in (podman build --from) and the host's module
// and build caches mounted, then checks the image like the prebuilt one.
func TestMultiStageDockerfile(t *testing.T) {
	pm := podman(t)
	builder := standInBuilder(t, pm)
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Fields(string(out))
	tag := fmt.Sprintf("localhost/crease-test-multistage:%d", time.Now().UnixNano())
	// --layers=false: no intermediate images are kept (the build stage alone is ~260 MB a run).
	args := []string{"build", "--layers=false", "--format", "docker", "--from", builder, "-v", caches[0] + ":/gomodcache", "-v", caches[1] + ":/gocache", "-t", tag, "../.."}
	start := time.Now()
	_, err = run(t, pm, args...)
	if _, lookErr := exec.LookPath("runc"); err != nil && lookErr == nil {
		// The RUN steps need a runtime that accepts this machine: as for running (startContainer).
		t.Logf("the default runtime failed (%v); again with runc and the current limits", err)
		_, err = run(t, pm, append([]string{"--runtime", "runc", "build", "--ulimit", "nofile=" + nofile() + ":" + nofile(), "--ulimit", "nproc=4096:4096"}, args[1:]...)...)
	}
	if err != nil {
		t.Fatalf("podman build of the Dockerfile: %v", err)
	}
	t.Cleanup(func() { _, _ = run(t, pm, "rmi", "-f", tag) })
	t.Logf("built the multi-stage Dockerfile in %v", time.Since(start).Round(time.Millisecond))
	t.Run("inspect", func(t *testing.T) { checkConfig(t, pm, tag) })
	t.Run("filesystem", func(t *testing.T) { checkFilesystem(t, pm, tag) })
}
