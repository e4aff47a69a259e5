// Package npmtest gives tests the npm side of the repository: the tools of
// scripts/npm-tools (typescript, ws, ajv and type packages), installed by
// scripts/ensure-deps.sh into a cache directory outside the repository, and the npm
// package crease-client packed from web/ with `npm pack` and installed from its tarball
// into a scratch project (offline: the package has no dependencies).
//
// Everything is per test: a scratch project is removed by t.Cleanup. Without node, npm
// or the installed tools a test skips with the command that fixes it, and fails when
// the CI environment variable is set.
package npmtest
