package pkgtest_test

import (
	"os"
	"testing"

	"crease/internal/npmtest"
)

// TestMain removes the packed package the tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	npmtest.Cleanup()
	os.Exit(code)
}
