# crease: the two commands a newcomer needs are `go run ./cmd/crease demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s

.PHONY: test deps vet unit jstest build demo bench bench-quick fuzz soak

test: deps vet unit jstest

deps:
	@bash scripts/ensure-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

jstest:
	@if [ -d web ] && ls web/*.test.mjs >/dev/null 2>&1; then node --test web/; fi

build:
	$(GO) build -o bin/crease ./cmd/crease

demo:
	$(GO) run ./cmd/crease demo

# The benchmark harness lives in its own module (bench/). `make bench` regenerates
# BENCHMARKS.md and bench/plots/; it wants the two cores to itself.
bench: build
	cd bench && go run ./cmd/harness --crease-bin ../bin/crease

# A CI-sized smoke run of the harness: checks it works, asserts nothing about speed.
bench-quick: build
	cd bench && go run ./cmd/harness -quick --crease-bin ../bin/crease
