# Caracal build, test, lint and benchmark targets.
GO      ?= go
BIN     ?= bin/caracal
PKGS    ?= ./...
# Node packages used by the end-to-end tests (real MCP and LLM SDK clients
# and servers), installed from e2e/node/package-lock.json.
NODE_DIR := e2e/node

# VERSION is stamped into every binary this Makefile builds and printed by
# `caracal version`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_LDFLAGS = -X github.com/caracal-dev/caracal/cli.version=$(VERSION)
# Release binaries are static (no cgo) and carry their own time zone data,
# so they run on scratch images and hosts without /usr/share/zoneinfo.
RELEASE_FLAGS = -trimpath -tags timetzdata -ldflags "-s -w $(VERSION_LDFLAGS)"
DIST      ?= dist
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64

# Container image: a static binary on scratch, built by docker or podman,
# whichever has a working engine (`make image CONTAINER_ENGINE=podman` to
# choose). As root without systemd, podman needs runc and cgroupfs.
IMAGE         ?= caracal:$(VERSION)
IMAGE_CONTEXT ?= bin/image
CA_CERTS      ?= /etc/ssl/certs/ca-certificates.crt
ZONEINFO      ?= /usr/share/zoneinfo
CONTAINER_ENGINE ?= $(shell \
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && podman --runtime runc --cgroup-manager=cgroupfs info >/dev/null 2>&1; then echo podman --runtime runc --cgroup-manager=cgroupfs; \
	elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then echo podman; \
	fi)

.PHONY: all build install test test-python unit e2e-deps lint bench bench-accept stress fuzz fuzz-list fmt clean dist image image-context container-engine

all: build

build:
	$(GO) build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN) ./cmd/caracal

install:
	$(GO) install -ldflags "$(VERSION_LDFLAGS)" ./cmd/caracal

# make dist cross-builds release archives into $(DIST): caracal_VERSION_OS_ARCH
# .tar.gz (.zip for windows) holding the binary and README.md, and SHA256SUMS.
# Build fewer with e.g. `make dist PLATFORMS=linux/amd64`.
dist:
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; name=caracal_$(VERSION)_$${os}_$${arch}; ext=; \
		if [ "$$os" = windows ]; then ext=.exe; fi; \
		echo "dist: $$name"; \
		mkdir -p $(DIST)/$$name; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build $(RELEASE_FLAGS) -o $(DIST)/$$name/caracal$$ext ./cmd/caracal; \
		cp README.md $(DIST)/$$name/; \
		if [ "$$os" = windows ]; then (cd $(DIST) && zip -qr $$name.zip $$name); \
		else tar -C $(DIST) --owner=0 --group=0 --numeric-owner -czf $(DIST)/$$name.tar.gz $$name; fi; \
		rm -rf $(DIST)/$$name; \
	done
	@cd $(DIST) && sha256sum $$(ls | grep -E '\.(tar\.gz|zip)$$') > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

# image-context stages what the Dockerfile copies, so building the image
# needs no network: the linux binary, CA certificates and time zone data.
image-context:
	@rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)/etc/ssl/certs $(IMAGE_CONTEXT)/usr/share $(IMAGE_CONTEXT)/var/lib/caracal
	CGO_ENABLED=0 GOOS=linux $(GO) build $(RELEASE_FLAGS) -o $(IMAGE_CONTEXT)/caracal ./cmd/caracal
	cp $(CA_CERTS) $(IMAGE_CONTEXT)/etc/ssl/certs/ca-certificates.crt
	cp -RL $(ZONEINFO) $(IMAGE_CONTEXT)/usr/share/zoneinfo
	cp Dockerfile $(IMAGE_CONTEXT)/Dockerfile

# container-engine prints the engine `make image` would use (empty: none).
container-engine:
	@echo $(CONTAINER_ENGINE)

image: image-context
	@if [ -z "$(CONTAINER_ENGINE)" ]; then echo "make image: no working container engine (docker info and podman info both failed)"; exit 1; fi
	$(CONTAINER_ENGINE) build --build-arg VERSION=$(VERSION) -t $(IMAGE) $(IMAGE_CONTEXT)

# make test runs every test the project has: unit and conformance tests
# against SQLite and a throwaway PostgreSQL cluster it starts itself, and
# end-to-end tests that drive the built binary with real clients, and the
# Python SDK's tests (test-python).
# The PostgreSQL backend runs first and verbosely (its output is kept in
# bin/postgres-test.log) so the log shows which server the conformance suite
# really ran against; then everything else.
test: e2e-deps
	@mkdir -p bin
	@echo "go test -race ./ledger/postgres/ (conformance suite on PostgreSQL)"
	@GORACE=atexit_sleep_ms=0 $(GO) test -race -count=1 -timeout 10m -v ./ledger/postgres/ > bin/postgres-test.log 2>&1 || { cat bin/postgres-test.log; exit 1; }
	@grep -m1 '^pgtest:' bin/postgres-test.log
	@echo "PostgreSQL: $$(grep -c -- '--- PASS: TestConformance/' bin/postgres-test.log) conformance subtests passed, $$(grep -c -- '--- FAIL' bin/postgres-test.log) failed"
	GORACE=atexit_sleep_ms=0 $(GO) test -race -count=1 -timeout 25m $$($(GO) list $(PKGS) | grep -v '/ledger/postgres$$')
	@echo "go test ./... in deploy/test (Helm chart, compose file, systemd units)"
	cd deploy/test && $(GO) test -count=1 -timeout 15m ./...
	@echo "Python SDK (make test-python)"
	@$(MAKE) --no-print-directory test-python

# make test-python runs the Python SDK's tests (sdk/python/tests) from
# source with Debian's python3: unit tests, and integration tests against a
# `caracal serve` of the binary built here. Signature checks need Debian's
# python3-cryptography; CARACAL_REQUIRE_CRYPTOGRAPHY makes them fail, not
# skip, without it.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
test-python: build
	CARACAL_BIN=$(abspath $(BIN)) CARACAL_REQUIRE_CRYPTOGRAPHY=1 $(PYTHON) -m unittest discover -s sdk/python/tests

e2e-deps:
	@if [ -f $(NODE_DIR)/package-lock.json ]; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	cd deploy/test && $(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)

# make stress runs the lease simulation (ledger/storetest.Simulate) at a
# large size on both backends: STRESS_STEPS steps of STRESS_PROCESSES
# processes for each seed from 1 to STRESS_SEEDS. make test runs it at 400
# steps with seed 1. A failing run names its seed; CARACAL_SIM_SEED=N
# with `go test -run TestSimulateLeases` replays it.
STRESS_STEPS ?= 5000
STRESS_PROCESSES ?= 8
STRESS_SEEDS ?= 4
stress:
	@for seed in $$(seq 1 $(STRESS_SEEDS)); do \
		echo "simulation seed $$seed: $(STRESS_STEPS) steps, $(STRESS_PROCESSES) processes"; \
		CARACAL_SIM_SEED=$$seed CARACAL_SIM_STEPS=$(STRESS_STEPS) CARACAL_SIM_PROCESSES=$(STRESS_PROCESSES) \
			$(GO) test -count=1 -timeout 60m -run '^TestSimulateLeases$$' ./ledger/sqlite/ ./ledger/postgres/ || exit 1; \
	done

# make bench-accept runs only the acceptance benchmarks, each Caracal path
# beside its baseline in the same run (docs/BENCHMARKS.md), prints their
# lines (all of them are kept in bin/bench-accept.log) and then the
# acceptance figures worked out from them (internal/cmd/benchaccept).
# ACCEPT_COUNT=5 runs five rounds; the figures then use medians. Each
# round runs every benchmark once, so that a path and its baseline are
# measured seconds apart, not minutes, on a machine whose speed drifts.
ACCEPT_COUNT ?= 1
bench-accept:
	@mkdir -p bin && : > bin/bench-accept.log
	@set -e; run() { \
		pkg=$$1; shift; \
		echo "go test -run '^\$$' $$* $$pkg"; \
		$(GO) test -run '^$$' -count 1 -timeout 30m "$$@" $$pkg > bin/bench-accept.run 2>&1 || { cat bin/bench-accept.run; exit 1; }; \
		cat bin/bench-accept.run >> bin/bench-accept.log; \
		grep -E '^(pkg:|cpu:|pgtest:|Benchmark[^[:space:]]+[[:space:]]+[0-9])' bin/bench-accept.run; \
	}; \
	for round in $$(seq 1 $(ACCEPT_COUNT)); do \
		echo "== round $$round of $(ACCEPT_COUNT)"; \
		run ./mcp/ -bench '^BenchmarkToolsCall$$/^(direct|nullrelay|proxy-fakemeter|proxy-sqlite)$$/' -benchtime 3000x; \
		run ./interpose/llmproxy/ -bench '^BenchmarkAddedLatency$$/^(bare|sqlite)$$/^plain$$/^c1$$' -benchtime 3000x; \
		run ./interpose/llmproxy/ -bench '^BenchmarkThroughput$$/^(bare|sqlite)$$/^plain$$/' -benchtime 20000x; \
		run ./ledger/sqlite/ -bench '^BenchmarkReserveSettle$$/^c=32/' -benchtime 20000x; \
		run ./ledger/postgres/ -bench '^BenchmarkReserveSettleTwoProcesses$$' -benchtime 20000x; \
	done; \
	rm -f bin/bench-accept.run
	@echo
	@$(GO) run ./internal/cmd/benchaccept < bin/bench-accept.log

# make fuzz runs every Fuzz target for FUZZTIME each, one at a time (go test
# fuzzes one target per run). Targets are discovered with go test -list, so
# a new FuzzX is picked up without editing this file; FUZZ narrows the run to
# targets whose package:name matches a grep pattern (FUZZ=mcp:). A failing
# input is written to the package's testdata/fuzz/ and from then on runs in
# make test as part of the seed corpus. Seed corpora alone run in make test.
FUZZTIME  ?= 30s
FUZZFLAGS ?= -parallel 1
FUZZ      ?= .

fuzz-list:
	@$(GO) test -list '^Fuzz' $(PKGS) | awk '/^Fuzz/ { n[++c] = $$1; next } /^ok/ { for (i = 1; i <= c; i++) print $$2 ":" n[i] } { c = 0 }' | grep -- '$(FUZZ)'

# Go before 1.27 can end a run with "context deadline exceeded" when
# FUZZTIME runs out while a worker is mid-input, with no input written: such
# a run is reported as a flake, not a failure. A real failure always writes
# its input to testdata/fuzz/.
fuzz:
	@targets=$$($(MAKE) -s fuzz-list); [ -n "$$targets" ] || { echo "no Fuzz targets match $(FUZZ)"; exit 1; }; \
	failed=""; flaked=""; log=$$(mktemp); \
	for t in $$targets; do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg)/testdata/fuzz/$$name; \
		before=$$(ls $$dir 2>/dev/null | wc -l); \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg > $$log 2>&1; then \
			grep -v '^fuzz: elapsed: [0-9]' $$log; grep '^fuzz: elapsed: [0-9]' $$log | tail -1; \
		else \
			cat $$log; \
			if [ "$$(ls $$dir 2>/dev/null | wc -l)" -eq "$$before" ] && grep -q '^    context deadline exceeded$$' $$log; then \
				flaked="$$flaked $$t"; \
			else \
				failed="$$failed $$t"; \
			fi; \
		fi; \
	done; rm -f $$log; \
	if [ -n "$$flaked" ]; then echo "stopped by the fuzztime deadline race, no input written:$$flaked"; fi; \
	if [ -n "$$failed" ]; then echo "fuzz failures:$$failed"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin $(DIST)
