# Caracal build, test, lint and benchmark targets.
GO      ?= go
BIN     ?= bin/caracal
PKGS    ?= ./...
# Node packages used by the end-to-end tests (real MCP and LLM SDK clients
# and servers), installed from e2e/node/package-lock.json.
NODE_DIR := e2e/node

.PHONY: all build install test unit e2e-deps lint bench fuzz fuzz-list fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/caracal

install:
	$(GO) install ./cmd/caracal

# make test runs every test the project has: unit and conformance tests
# against SQLite and a throwaway PostgreSQL cluster it starts itself, and
# end-to-end tests that drive the built binary with real clients.
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

e2e-deps:
	@if [ -f $(NODE_DIR)/package-lock.json ]; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)

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
	rm -rf bin
