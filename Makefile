# Developer shortcuts. CI runs .ci/run, which runs the README's test command.

GO       ?= go
FUZZTIME ?= 10m
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

# Fuzz targets as package:Target pairs.
FUZZ_TARGETS := ./wire:FuzzParseASAP ./wire:FuzzParseENRP ./transport:FuzzChunkReader ./transport:FuzzParseAddr \
	./registrar/asap:FuzzCore ./regclient:FuzzClient ./pe-agent:FuzzSession ./pucache:FuzzResolutionResponse \
	./session:FuzzControl ./session:FuzzVerify

# Debian package version: 0.1.0~gitDATE.HASH (newer commits sort higher).
DEB_VERSION ?= 0.1.0~git$(shell git log -1 --format=%cd.%h --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0)
DEB_DIR     ?= bin/

.PHONY: all build test fuzz bench bench-proxy bench-quick bench-idle interop deb vm-package clean

all: build

## build: static binary bin/rserpool
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/rserpool ./cmd/rserpool

## deb: the Debian package bin/rserpool_$(DEB_VERSION)_amd64.deb, built by nfpm as a Go tool
deb: build
	VERSION=$(DEB_VERSION) RSERPOOL_BIN=bin/rserpool $(GO) tool -modfile=deploy/tools.mod nfpm package \
		--config deploy/debian/nfpm.yaml --packager deb --target $(DEB_DIR)

## vm-package: install the package in ../shared/sctp-vm and check that the daemons run (deploy/vm/run)
vm-package:
	deploy/vm/run

## test: the README's test command
test:
	$(GO) test -race -timeout 20m ./...

## fuzz: each fuzz target for FUZZTIME (default 10m), one after another
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## bench: Go benchmarks of every package, then the proxy harness
bench: bench-proxy
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-proxy: direct vs rserpool proxy vs HAProxy on loopback; rewrites BENCHMARKS.md
bench-proxy:
	$(GO) run ./bench/proxybench -write BENCHMARKS.md

## bench-quick: one short run of each measurement, nothing written (under a minute)
bench-quick:
	$(GO) run ./bench/proxybench -runs 1 -duration 2s

## bench-idle: memory per idle relayed connection (proxy, goroutine relay, HAProxy); rewrites its BENCHMARKS.md section
bench-idle:
	$(GO) run ./bench/proxybench -mode idle -runs 3 -write BENCHMARKS.md

## interop: SCTP and RSPLIB interoperability suite in ../shared/sctp-vm
interop:
	interop/run

clean:
	rm -rf bin bench/out
