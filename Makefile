# Caracal build, test, lint and benchmark targets.
GO      ?= go
BIN     ?= bin/caracal
PKGS    ?= ./...
# Node packages used by the end-to-end tests (real MCP and LLM SDK clients
# and servers), installed from e2e/node/package-lock.json.
NODE_DIR := e2e/node

.PHONY: all build install test unit e2e-deps lint bench fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/caracal

install:
	$(GO) install ./cmd/caracal

# make test runs every test the project has: unit and conformance tests
# against SQLite and a throwaway PostgreSQL cluster it starts itself, and
# end-to-end tests that drive the built binary with real clients.
test: e2e-deps
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

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

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
