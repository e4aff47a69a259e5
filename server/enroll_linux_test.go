package server

import (
	"os"
	"strings"
	"testing"
)

// TestGnetInternalsPinned: enroll_linux.go calls two unexported gnet functions by name,
// declared to match gnet v2.9.7. go.mod naming another gnet version, or replacing it,
// must fail here, so that the declarations are checked against that source first.
func TestGnetInternalsPinned(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, line := range strings.Split(string(mod), "\n") {
		if !strings.Contains(line, gnetModule+" ") {
			continue
		}
		if strings.Contains(line, "=>") {
			t.Fatalf("go.mod replaces gnet (%q): check enroll_linux.go's declarations against that source", strings.TrimSpace(line))
		}
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) > 1 && f[0] == gnetModule {
			versions = append(versions, f[1])
		}
	}
	if len(versions) != 1 || versions[0] != gnetVersion {
		t.Fatalf("go.mod requires gnet %v; enroll_linux.go's linknamed declarations match %s: check newStreamConn and (*eventloop).register0 in the new source, then update gnetVersion",
			versions, gnetVersion)
	}
}
