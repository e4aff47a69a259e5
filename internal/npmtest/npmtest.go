package npmtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"crease/internal/testenv"
)

// Root is the repository root: the nearest directory above the test's with the go.mod
// of module crease.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module crease\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("npmtest: repository root (go.mod of module crease) not found")
		}
		dir = parent
	}
}

// Node is the path of node, which must be version 20 or later.
func Node(t testing.TB) string {
	t.Helper()
	p := testenv.LookPath(t, "node", "apt-get install -y nodejs (make test does, via scripts/ensure-deps.sh)")
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < 20 {
		testenv.Missing(t, "node "+v+" is older than 20, the package's engines field")
	}
	return p
}

// NodeMajor is node's major version.
func NodeMajor(t testing.TB) int {
	t.Helper()
	out, err := exec.Command(Node(t), "-p", "process.versions.node.split('.')[0]").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// ToolsDir is where scripts/ensure-deps.sh installs scripts/npm-tools:
// $CREASE_NPM_TOOLS, else $XDG_CACHE_HOME/crease/npm-tools, else ~/.cache/crease/npm-tools.
func ToolsDir() string {
	if d := os.Getenv("CREASE_NPM_TOOLS"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "crease", "npm-tools")
}

// Tools returns ToolsDir after checking that it holds the install of the current
// scripts/npm-tools/package-lock.json (ensure-deps.sh writes its hash to .stamp).
func Tools(t testing.TB) string {
	t.Helper()
	Node(t)
	dir := ToolsDir()
	lock, err := os.ReadFile(filepath.Join(Root(t), "scripts", "npm-tools", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	stamp, _ := os.ReadFile(filepath.Join(dir, ".stamp"))
	if strings.TrimSpace(string(stamp)) != hex.EncodeToString(sum[:]) {
		testenv.Missing(t, "the npm test tools in "+dir+" are missing or older than scripts/npm-tools/package-lock.json: run bash scripts/ensure-deps.sh (make deps)")
	}
	return dir
}

// Bin is the path of a tool's executable in the tools' node_modules/.bin.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Tools(t), "node_modules", ".bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("npmtest: %s: %v", name, err)
	}
	return p
}

// Package is the packed crease-client: the tarball and its files as npm packed them.
type Package struct {
	Tarball string            // path of the .tgz
	Dir     string            // the tarball extracted: Dir/package.json, Dir/crease-client.js...
	Files   map[string][]byte // path in the package (without "package/") -> content
}

var (
	packMu  sync.Mutex
	packed  *Package
	packDir string
)

// Pack runs npm pack in web/ and extracts the tarball, once per test binary: the result
// is shared by the tests (read it, do not change it) and lives in a temporary directory
// that Cleanup removes (call it from TestMain; otherwise it stays in os.TempDir()).
func Pack(t testing.TB) *Package {
	t.Helper()
	Node(t)
	npm, err := exec.LookPath("npm")
	if err != nil {
		testenv.Missing(t, "npm not found: apt-get install -y npm")
	}
	packMu.Lock()
	defer packMu.Unlock()
	if packed != nil {
		return packed
	}
	out, err := os.MkdirTemp("", "crease-npm-pack-")
	if err != nil {
		t.Fatal(err)
	}
	packDir = out
	cmd := exec.Command(npm, "pack", "--json", "--pack-destination", out)
	cmd.Dir = filepath.Join(Root(t), "web")
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm pack: %v\n%s", err, stderr.String())
	}
	var list []struct {
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &list); err != nil || len(list) != 1 {
		t.Fatalf("npm pack --json: %v: %s", err, stdout.String())
	}
	p := &Package{Tarball: filepath.Join(out, list[0].Filename), Dir: filepath.Join(out, "extracted"), Files: map[string][]byte{}}
	if err := p.extract(); err != nil {
		t.Fatalf("extracting %s: %v", p.Tarball, err)
	}
	packed = p
	return p
}

// Cleanup removes what Pack made.
func Cleanup() {
	packMu.Lock()
	defer packMu.Unlock()
	if packDir != "" {
		os.RemoveAll(packDir)
	}
	packed, packDir = nil, ""
}

func (p *Package) extract() error {
	f, err := os.Open(p.Tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name, ok := strings.CutPrefix(h.Name, "package/")
		if !ok || h.Typeflag != tar.TypeReg || strings.Contains(name, "..") {
			return fmt.Errorf("unexpected entry %q (type %c)", h.Name, h.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		p.Files[name] = b
		dst := filepath.Join(p.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
	}
}

// Scratch makes a project inside the tools directory (so that its imports of typescript,
// ws, ajv and @types resolve there, through the parent node_modules) with the tarball
// installed by `npm install --offline`, and removes it when the test ends. files are
// written into it first (name -> content).
func Scratch(t testing.TB, p *Package, files map[string]string) string {
	t.Helper()
	tools := Tools(t)
	parent := filepath.Join(tools, "scratch")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "consumer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, ok := files["package.json"]; !ok {
		files["package.json"] = `{"name":"crease-consumer","private":true,"type":"module"}`
	}
	for name, content := range files {
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("npm", "install", "--offline", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts", p.Tarball)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", filepath.Base(p.Tarball), err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "crease-client", "package.json")); err != nil {
		t.Fatalf("npm install did not install crease-client: %v", err)
	}
	return dir
}
