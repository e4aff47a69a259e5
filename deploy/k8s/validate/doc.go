// Package validate checks the Kubernetes manifests of deploy/k8s against the official
// API types (k8s.io/api), decoded strictly as the API server's strict field validation
// would (unknown and duplicate fields are errors), and against what crease needs: probe
// paths, a termination grace period longer than the drain, a non-root read-only pod,
// selectors that match, an HPA metric that the adapter rule serves, sysctls that
// Kubernetes allows by default with the values of deploy/99-crease.conf, and env
// variables that are real crease flags. It is its own Go module so that the main
// module does not depend on k8s.io; make test runs it (make k8scheck).
package validate
