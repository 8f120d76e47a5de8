# vpcnat: `make demo` (no cluster needed) and `make test` (the whole suite), as root on a fresh
# Debian/Ubuntu machine. Both install what is missing first (hack/install-deps.sh).
SHELL := /bin/bash
GO    ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN   := $(CURDIR)/bin
# Built tools and test binaries are cached by version outside the checkout.
CACHE ?= /var/cache/vpcnat
export PATH := $(dir $(GO)):$(PATH)

.PHONY: all deps build demo test test-unit bench vet clean

all: build

deps:
	@hack/install-deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/vpcnat-daemon ./daemon
	$(GO) build -o $(BIN)/vpcnat ./plugins/vpcnat

demo: deps build
	$(GO) build -o $(BIN)/vpcnat-demo ./test/demo
	$(BIN)/vpcnat-demo --daemon $(BIN)/vpcnat-daemon --spec examples/seed.yaml \
		--cni-path $(BIN):$$(VPCNAT_CACHE=$(CACHE) hack/build-cni-plugins.sh)

vet:
	$(GO) vet ./...

# The whole suite. Kernel tests need root (CI runs as root); -p 1 keeps namespace-heavy packages
# from competing for the two cores and the xtables lock.
test: deps build vet
	$(GO) test -count=1 -p 1 -timeout 30m ./...

test-unit:
	$(GO) test -count=1 ./pkg/...

bench: deps build
	$(GO) build -o $(BIN)/vpcnat-bench ./test/bench
	$(BIN)/vpcnat-bench

clean:
	rm -rf $(BIN)
