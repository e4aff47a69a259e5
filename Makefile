# crease: the two commands a newcomer needs are `go run ./cmd/crease demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s

.PHONY: test deps vet unit jstest deploycheck k8scheck build image demo bench bench-quick bench-matchday bench-matchday-quick bench-matchday-baselines fuzz soak

test: deps vet unit jstest deploycheck k8scheck bench-quick bench-matchday-quick

deps:
	@bash scripts/ensure-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

jstest:
	@if [ -d web ] && ls web/*.test.mjs >/dev/null 2>&1; then node --test web/; fi

# The operators' files with the real tools (haproxy -c and a real HAProxy run,
# systemd-analyze, sysctl keys, dashboard PromQL): loopback only, ~15 s.
deploycheck:
	@bash deploy/check.sh

# The Kubernetes manifests decoded strictly into k8s.io/api types: a module of its own
# (deploy/k8s/validate) so that the main module does not depend on k8s.io.
k8scheck:
	cd deploy/k8s/validate && $(GO) vet ./... && $(GO) test -count=1 ./...

build:
	$(GO) build -o bin/crease ./cmd/crease

# The container image from a static binary built here (no registry needed): podman,
# else docker. The repository's Dockerfile is the multi-stage variant of the same image.
IMAGE ?= crease:dev
image:
	deploy/container/build.sh $(IMAGE)

demo:
	$(GO) run ./cmd/crease demo

# The benchmark harness lives in its own module (bench/). `make bench` regenerates
# BENCHMARKS.md and bench/plots/; it wants the two cores to itself.
bench: build
	cd bench && go run ./cmd/harness --crease-bin ../bin/crease

# A CI-sized smoke run of the harness: checks it works, asserts nothing about speed.
bench-quick: build
	cd bench && go run ./cmd/harness -quick --crease-bin ../bin/crease

# Match day (bench/cmd/matchday): a real match through Redis to 8 gateways, the audience
# ramping from 5,000 to 120,000 in 3 minutes, a handover at the peak, on one port and
# behind HAProxy; writes bench/matchday/ and the Match day section of BENCHMARKS.md.
# ~9 minutes; it wants the two cores to itself.
bench-matchday: build
	cd bench && go run ./cmd/matchday --crease-bin ../bin/crease

# The same spike with the baselines (one port, the same process count), ~10 minutes.
bench-matchday-baselines: build
	cd bench && go run ./cmd/matchday -server naive -variants reuseport --crease-bin ../bin/crease
	cd bench && go run ./cmd/matchday -server centrifuge -variants reuseport --crease-bin ../bin/crease

# Match day at a tenth of the audience and time, in make test: every connection must get
# every delta or a resync and end equal to the snapshot (correctness, not speed); plus the
# bench module's own vet and tests.
bench-matchday-quick: build
	cd bench && $(GO) vet ./... && $(GO) test -race -count=1 ./cmd/loadgen/ ./cmd/matchday/ ./internal/...
	cd bench && go run ./cmd/matchday -quick --crease-bin ../bin/crease

# Every fuzz target of the root module (bench/ is its own module), each for FUZZTIME.
# Seed corpora live in each package's testdata/fuzz/; a crasher found here is written
# there by go test and becomes a regression test of the next plain `go test`.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^\./bench/' | sort); do \
		dir=$$(dirname $$f); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$dir $$name for $(FUZZTIME)"; \
			$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s $$dir; \
		done; \
	done

# The long versions of the fault tests of server/faults (more clients, longer replays)
# and of the Redis failover tests of server/failover, among them the failover loop: a
# failover every 20 s for 5 minutes under a replaying match and 2,000 clients (without
# -race: 2,000 in-process clients under the race detector starve two cores; make test
# runs the same tests shorter with -race).
soak:
	CREASE_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v -run . ./server/faults/
	CREASE_SOAK=1 $(GO) test -count=1 -timeout 30m -v -run . ./server/failover/
