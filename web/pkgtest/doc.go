// Package pkgtest tests the npm package crease-client as its users get it: packed by
// `npm pack` from web/, installed from the tarball into a scratch project, type-checked
// with tsc on a consumer (the README's examples included, the React hook among them),
// its declarations compared with the code, and run under Node against a live gateway
// to the state of the snapshot. web/e2e loads the page from the packed files in
// Chromium. The package has no code of its own.
package pkgtest
