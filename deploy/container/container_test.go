package container_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"crease/internal/testenv"
	"crease/server/servertest"
)

// podman finds podman, or skips (fails when CI is set: make test installs it).
func podman(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "podman", "apt-get install -y podman runc (make test does, via scripts/ensure-deps.sh)")
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// finalStage is the text from the "final stage" marker on, with the one line that
// differs by design (where rootfs comes from) normalised.
func finalStage(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "# ---- final stage")
	if i < 0 {
		t.Fatalf("%s: no final stage marker", path)
	}
	s = s[i:]
	s = s[strings.Index(s, "\n")+1:]
	return strings.Replace(s, "COPY --from=build /out/rootfs/ /", "COPY rootfs/ /", 1)
}

// TestDockerfilesShareTheFinalStage: the multi-stage Dockerfile users build and the
// prebuilt one the tests build make the same image around the binary.
func TestDockerfilesShareTheFinalStage(t *testing.T) {
	multi := finalStage(t, "../../Dockerfile")
	pre := finalStage(t, "Dockerfile.prebuilt")
	if multi != pre {
		t.Fatalf("final stages differ:\n--- Dockerfile\n%s\n--- Dockerfile.prebuilt\n%s", multi, pre)
	}
	for _, want := range []string{"FROM scratch\n", "USER 65532:65532\n", "EXPOSE 8080 8081\n",
		`HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/crease", "healthcheck"]`,
		"STOPSIGNAL SIGTERM\n", `ENTRYPOINT ["/crease"]`} {
		if !strings.Contains(pre, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
}

// image builds the image with build.sh (the operators' path without a registry) once
// for the test and removes it afterwards.
func image(t *testing.T, pm string) string {
	t.Helper()
	tag := fmt.Sprintf("localhost/crease-test:%d", time.Now().UnixNano())
	cmd := exec.Command("./build.sh", tag)
	cmd.Env = append(os.Environ(), "CONTAINER_TOOL="+pm)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = run(t, pm, "rmi", "-f", tag) })
	return tag
}

// TestImage builds the image and checks what an orchestrator reads from it, what is in
// it, and, where containers can run here, that it serves, reports healthy, and drains on
// the stop signal.
func TestImage(t *testing.T) {
	pm := podman(t)
	tag := image(t, pm)

	t.Run("inspect", func(t *testing.T) { checkConfig(t, pm, tag) })
	t.Run("filesystem", func(t *testing.T) { checkFilesystem(t, pm, tag) })

	t.Run("run", func(t *testing.T) { runAndDrain(t, pm, tag) })
}

// checkConfig checks what an orchestrator reads from the image: user, ports, stop
// signal, entrypoint, environment, health check, labels.
func checkConfig(t *testing.T, pm, tag string) {
	out, err := run(t, pm, "image", "inspect", tag)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []struct {
		Config struct {
			User         string
			ExposedPorts map[string]struct{}
			Env          []string
			Entrypoint   []string
			Cmd          []string
			StopSignal   string
		}
		Healthcheck *struct {
			Test     []string
			Interval time.Duration
			Timeout  time.Duration
			Retries  int
		}
		Os, Architecture string
		Labels           map[string]string
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("inspect: %v (%d images)", err, len(imgs))
	}
	im := imgs[0]
	c := im.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root, numeric)", c.User)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v, want 8080/tcp and 8081/tcp", c.ExposedPorts)
	}
	if _, ok := c.ExposedPorts["8081/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 8081/tcp", c.ExposedPorts)
	}
	if c.StopSignal != "SIGTERM" {
		t.Errorf("stop signal %q", c.StopSignal)
	}
	if strings.Join(c.Entrypoint, " ") != "/crease" || strings.Join(c.Cmd, " ") != "serve" {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	env := strings.Join(c.Env, "\n")
	for _, want := range []string{"CREASE_WS_ADDR=:8080", "CREASE_HTTP_ADDR=:8081"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, c.Env)
		}
	}
	hc := im.Healthcheck
	if hc == nil || strings.Join(hc.Test, " ") != "CMD /crease healthcheck" || hc.Interval != 10*time.Second || hc.Timeout != 3*time.Second || hc.Retries != 3 {
		t.Errorf("healthcheck %+v, want CMD /crease healthcheck every 10s, 3s timeout, 3 retries (built with --format docker?)", hc)
	}
	if im.Os != "linux" || im.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
		t.Errorf("os %q, labels %v", im.Os, im.Labels)
	}
}

// checkFilesystem exports a created (not started) container: the image holds a static
// root-owned binary, a sticky world-writable /tmp, the license texts, and nothing else.
func checkFilesystem(t *testing.T, pm, tag string) {
	id, err := run(t, pm, "create", tag)
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(id)
	t.Cleanup(func() { _, _ = run(t, pm, "rm", "-f", id) })
	cmd := exec.Command(pm, "export", id)
	var tarball, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &tarball, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("export: %v: %s", err, errb.String())
	}
	files := map[string]*tar.Header{}
	var bin []byte
	tr := tar.NewReader(&tarball)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = h
		if name == "crease" {
			bin, _ = io.ReadAll(tr)
		}
	}
	// podman adds the mount points of a container's runtime files (/etc/hosts, /dev...).
	runtimeFiles := map[string]bool{"": true, "dev": true, "etc": true, "etc/hosts": true, "etc/resolv.conf": true,
		"etc/hostname": true, "etc/passwd": true, "etc/group": true, "proc": true, "sys": true, "run": true, "run/.containerenv": true}
	want := map[string]bool{"crease": true, "tmp": true, "usr": true, "usr/share": true, "usr/share/doc": true,
		"usr/share/doc/crease": true, "usr/share/doc/crease/LICENSE": true, "usr/share/doc/crease/NOTICE": true}
	for name := range files {
		if !want[name] && !runtimeFiles[name] {
			t.Errorf("unexpected file in the image: /%s", name)
		}
	}
	for name := range want {
		if files[name] == nil {
			t.Errorf("missing /%s", name)
		}
	}
	if h := files["tmp"]; h != nil && (h.Typeflag != tar.TypeDir || h.Mode&0o7777 != 0o1777) {
		t.Errorf("/tmp: type %c mode %o, want a sticky world-writable directory (1777)", h.Typeflag, h.Mode)
	}
	if h := files["crease"]; h != nil && (h.Uid != 0 || h.Mode&0o022 != 0 || h.Mode&0o111 == 0) {
		t.Errorf("/crease: uid %d mode %o, want root-owned, executable, not writable by others", h.Uid, h.Mode)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/crease is not an ELF binary: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("/crease has an interpreter: dynamically linked (CGO_ENABLED=0 missing?)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("/crease needs %v", libs)
	}
}

// startContainer runs the image detached, publishing its two ports on loopback. A
// machine may not let containers start (no cgroup setup the runtime accepts, rlimits
// the runtime may not raise): then it retries with runc and the current limits, and
// skips, saying why, when that fails too.
func startContainer(t *testing.T, pm, tag, wsAddr, httpAddr string, args ...string) string {
	t.Helper()
	base := []string{"run", "-d", "-p", wsAddr + ":8080", "-p", httpAddr + ":8081"}
	attempts := [][]string{nil}
	if _, err := exec.LookPath("runc"); err == nil {
		n := nofile()
		attempts = append(attempts, []string{"--runtime", "runc", "--ulimit", "nofile=" + n + ":" + n, "--ulimit", "nproc=4096:4096"})
	}
	var errs []string
	for i, extra := range attempts {
		name := fmt.Sprintf("crease-test-%d-%d", time.Now().UnixNano(), i)
		argv := append(append(append(append([]string{}, base...), "--name", name), extra...), tag)
		_, err := run(t, pm, append(argv, args...)...)
		t.Cleanup(func() { _, _ = run(t, pm, "rm", "-f", name) })
		if err == nil {
			t.Logf("container %s started with %v", name, extra)
			return name
		}
		errs = append(errs, err.Error())
	}
	t.Skipf("podman cannot run containers on this machine, so the image was built and inspected but not run: %s", strings.Join(errs, "; then: "))
	return ""
}

// runAndDrain: the container serves the embedded page and real matches, `podman
// healthcheck run` (the image's HEALTHCHECK) reports healthy, the process runs as 65532,
// and `podman stop` (STOPSIGNAL SIGTERM) makes the gateway drain: a connected client gets
// reconnect and close 1012, and the container exits 0 well before the stop timeout.
func runAndDrain(t *testing.T, pm, tag string) {
	wsAddr, httpAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	name := startContainer(t, pm, tag, wsAddr, httpAddr, "demo", "--speed", "50", "--sim", "0", "--drain-window", "2s", "--drain-grace", "3s")
	base := "http://" + httpAddr
	get := func(path string) (int, string, error) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	defer func() {
		if t.Failed() {
			out, _ := run(t, pm, "logs", name)
			t.Logf("container logs:\n%s", out)
		}
	}()
	servertest.Eventually(t, 30*time.Second, func() error {
		code, _, err := get("/readyz")
		if err == nil && code != 200 {
			err = fmt.Errorf("/readyz %d", code)
		}
		return err
	})
	client, err := os.ReadFile("../../web/crease-client.js")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/": "<html", "/crease-client.js": string(client)} {
		code, body, err := get(path)
		if err != nil || code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %v, body lacks %.40q", path, code, err, want)
		}
	}
	servertest.Eventually(t, 10*time.Second, func() error { // the replay publishes its first ball
		code, body, err := get("/v1/matches")
		if err == nil && (code != 200 || !strings.Contains(body, `"match":"1298150"`)) {
			err = fmt.Errorf("/v1/matches: %d %s", code, body)
		}
		return err
	})
	// podman healthcheck run executes the image's HEALTHCHECK in the container.
	if _, err := run(t, pm, "healthcheck", "run", name); err != nil {
		t.Errorf("podman healthcheck run: %v", err)
	}
	if out, err := run(t, pm, "inspect", "--format", "{{.State.Health.Status}} {{.State.Pid}}", name); err != nil {
		t.Error(err)
	} else {
		var health string
		var pid int
		fmt.Sscan(out, &health, &pid)
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if health != "healthy" || !strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
			t.Errorf("health %q; process %d runs as %q, want 65532", health, pid, uidLine(status))
		}
	}

	c, resp, err := servertest.DialWS(wsAddr, "/ws?match=1298150", nil, "")
	if err != nil || c == nil {
		t.Fatalf("WebSocket: %v %v", resp, err)
	}
	defer c.Close()
	c.Expect(t, "hello")
	c.Expect(t, "subscribed")
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { _, err := run(t, pm, "stop", "-t", "30", name); stopped <- err }()
	sawReconnect, closeCode := false, 0
	for closeCode == 0 {
		f, err := c.Next(time.Now().Add(20 * time.Second))
		if err != nil {
			t.Fatalf("after podman stop: %v (reconnect seen: %v)", err, sawReconnect)
		}
		sawReconnect = sawReconnect || f.Type == "reconnect"
		closeCode = f.Close
	}
	if !sawReconnect || closeCode != 1012 {
		t.Errorf("podman stop: reconnect %v, close %d; want a drain (reconnect, then 1012)", sawReconnect, closeCode)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out, err := run(t, pm, "inspect", "--format", "{{.State.ExitCode}}", name)
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("exit code %q %v, want 0", out, err)
	}
	if took > 15*time.Second {
		t.Errorf("podman stop took %v: the gateway did not exit on SIGTERM by drain window + grace (5 s)", took)
	}
	t.Logf("podman stop: drained and exited 0 in %v", took.Round(time.Millisecond))
}

func uidLine(status []byte) string {
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			return l
		}
	}
	return ""
}

// nofile is this process's hard RLIMIT_NOFILE, which a container may keep but not raise
// without CAP_SYS_RESOURCE.
func nofile() string {
	var l syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return fmt.Sprint(l.Max)
}
