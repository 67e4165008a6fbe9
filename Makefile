# trustd — build, test and run targets. `make test` is what CI runs.
SHELL   := /bin/bash
GO      ?= go
BIN     ?= bin
PKGS    := $(shell $(GO) list ./... 2>/dev/null)
UNIT    := $(filter-out %/test/e2e %/test/harness %/test/cmd/demo,$(PKGS))
FUZZTIME ?= 10s

.PHONY: all build tools test unit e2e lint fuzz fuzz-short demo bench clean package

all: build

## build: trustd and trustd-verifier (the pull gate, which finds trustd next to it) in ./bin
build:
	$(GO) build -trimpath -o $(BIN)/trustd ./cmd/trustd
	rm -f $(BIN)/trustd-verifier
	$(GO) build -trimpath -o $(BIN)/trustd-verifier ./cmd/trustd-verifier

## tools: install test prerequisites (Debian packages, pinned containerd, runc, crictl and kubelet; cached)
tools:
	bash test/tools.sh

## test: the whole suite — lint, unit tests, bounded fuzzing, end-to-end against real containerd
test: tools lint
	$(GO) test -count=1 -timeout 15m $(UNIT)
	$(MAKE) fuzz-short
	$(GO) test -count=1 -timeout 30m -v ./test/...

## unit: unit and golden tests only (no root needed)
unit:
	$(GO) test -count=1 $(UNIT)

## e2e: the end-to-end suite against real containerd, runc, registry and trust servers (root)
e2e: tools
	$(GO) test -count=1 -timeout 30m -v ./test/...

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz-short: every fuzz target for $(FUZZTIME) (CI budget)
fuzz-short:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh $(UNIT)

## fuzz: the same, longer (FUZZTIME=10m by default here)
fuzz:
	$(MAKE) fuzz-short FUZZTIME=10m

## demo: a throw-away node in a temporary directory: containerd, registry, signed TUF repository, trustd
## (DOCKER=1: a Docker Engine node, trustd as its authorization plugin)
demo: tools
	DOCKER=$(DOCKER) $(GO) run ./test/cmd/demo

## bench: benchmarks (see BENCHMARKS.md)
bench:
	GO=$(GO) bash scripts/bench.sh

## package: the .deb in $(DIST) (nfpm $(NFPM_VERSION), config packaging/nfpm.yaml): static
## trustd and trustd-verifier (linked from containerd's image verifier dir), the systemd unit,
## an audit-mode default policy (conffile) and the containerd drop-in (shipped disabled)
NFPM_VERSION ?= v2.45.2
NFPM    ?= GOFLAGS= GOWORK=off $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
DIST    ?= $(BIN)/dist
VERSION ?= $(shell packaging/version.sh)
GOARCH  ?= $(shell $(GO) env GOARCH)
DEB_MAINTAINER ?= trustd maintainers <trustd-maintainers@users.noreply.github.com>
package:
	@mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '-s -w' -o $(DIST)/trustd ./cmd/trustd
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '-s -w' -o $(DIST)/trustd-verifier ./cmd/trustd-verifier
	GO=$(GO) bash packaging/third-party-notices.sh $(DIST)/trustd $(DIST)/trustd-verifier > $(DIST)/THIRD_PARTY_NOTICES
	gzip -n -9 -c packaging/deb/trustd.1 > $(DIST)/trustd.1.gz
	rm -f $(DIST)/trustd_*.deb
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) TRUSTD_DIST=$(DIST) \
	  VERSION='$(VERSION)' GOARCH=$(GOARCH) DEB_MAINTAINER='$(DEB_MAINTAINER)' \
	  $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/
	@ls -l $(DIST)/trustd_*.deb

clean:
	rm -rf $(BIN) test-e2e.log
