// Package container tests the crease container image: the repository's multi-stage
// Dockerfile and Dockerfile.prebuilt (built from a host binary by build.sh) share one
// final stage; both are built with podman (the multi-stage one with a local stand-in
// for the golang image: podman build --from), inspected (user, ports, health check,
// stop signal, a static binary on an otherwise empty filesystem) and, where the machine
// can run containers, run and probed. The package has no code of its own.
package container
