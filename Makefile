# Firehose — make help lists the targets.
#
# Everything a target needs is installed by the target itself, from the Go
# module proxy or Debian's packages, so a fresh machine needs only Go.

GO          ?= go
BIN         := bin/firehose

# Tool pins: the one place their versions are written. Go tools are pinned by
# the module version the Go module proxy serves (`go list -m -versions MOD`),
# never by a project's release tag (staticcheck's 2026.2.2 is v0.8.2 there).
STATICCHECK_MOD     := honnef.co/go/tools
STATICCHECK_VERSION := v0.8.2
VERSITYGW_MOD       := github.com/versity/versitygw
VERSITYGW_VERSION   := v1.8.0
KINESALITE_VERSION  := 3.3.3
DUCKDB_VERSION      := 1.5.6-r.1

# Tools are installed into the checkout (.tools, git-ignored), never into the
# machine's Go bin directory: a fresh clone, which is what CI runs, installs
# them from the registries every time, so a pin that no longer resolves fails
# CI here instead of on the next new machine. The stamp file names the version,
# so changing a pin reinstalls.
TOOLS       := $(CURDIR)/.tools
TOOLBIN     := $(TOOLS)/bin
STATICCHECK := $(TOOLBIN)/.staticcheck-$(STATICCHECK_VERSION)
VERSITYGW   := $(TOOLBIN)/.versitygw-$(VERSITYGW_VERSION)
KINESALITE  := $(TOOLS)/kinesalite/.kinesalite-$(KINESALITE_VERSION)
DUCKDB      := $(TOOLS)/duckdb/.duckdb-$(DUCKDB_VERSION)
GO_TOOL_PINS := $(STATICCHECK_MOD)@$(STATICCHECK_VERSION) $(VERSITYGW_MOD)@$(VERSITYGW_VERSION)
export PATH := $(TOOLBIN):$(PATH)
# Run apt-get as root, or through sudo when there is one.
SUDO        := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null && echo sudo)
# Fuzz budgets are counts, not durations: Go 1.26's fuzz coordinator can
# fail a target with "context deadline exceeded" when a duration runs out
# under load (golang/go#75804, fixed in Go 1.27). A count has no deadline.
FUZZTIME    ?= 50000x

.DEFAULT_GOAL := help
.PHONY: help build run test unit chart lint alerts fuzz bench tools pins clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Stamped into the binary (firehose version, firehose_build_info).
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -X github.com/firehose/firehose/internal/buildinfo.Version=$(VERSION) -X github.com/firehose/firehose/internal/buildinfo.Revision=$(REVISION)

build: ## build bin/firehose, stamped with its version and revision
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/firehose

run: build ## start firehose dev: embedded broker, processor, file connector, demo events
	./$(BIN) dev

test: pins tools lint alerts unit chart fuzz ## everything CI checks: tool pins, lint, alert rules, go test -race ./..., the Helm chart, short fuzz runs

# The firehosetest container suites run on podman through
# scripts/with-podman.sh (they skip, saying why, where it cannot run).
unit: tools
	TOOLS=$(TOOLS) ./scripts/with-podman.sh $(GO) test -race -count=1 -timeout 20m ./...

# The chart's tests are a module of their own (deploy/helm), so that Helm's
# and Kubernetes' dependencies stay out of Firehose's.
chart: ## render the Helm chart with Helm's engine and decode every object strictly
	cd deploy/helm && $(GO) test -count=1 ./...

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	cd deploy/helm && $(GO) vet ./... && staticcheck ./...

alerts: tools ## check the Prometheus alert rules and prove each fires (promtool)
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

# Each fuzz target runs for FUZZTIME; go test -fuzz takes one target at a time.
FUZZ_TARGETS := \
	./schemas:FuzzJSONDecode \
	./schemas:FuzzAvroDecode \
	./schemas:FuzzConfluentAvroDecode \
	./schemas:FuzzAvroSchemaAndPayload \
	./schemas:FuzzDecodeHeader \
	./schemas:FuzzScan \
	./schemas:FuzzAppendTimestamp \
	./schemas:FuzzAppendString \
	./config:FuzzParse \
	./internal/yamlconf:FuzzExpand \
	./filter:FuzzMatch \
	./filter:FuzzGlobMatch \
	./filter:FuzzPathsAsWhole \
	./transform:FuzzApplyFromValue \
	./transform:FuzzAppendValue \
	./processor:FuzzMaskFunctions \
	./processor:FuzzMaskerApply \
	./processor:FuzzMaskingHoldsForEveryReader \
	./processor:FuzzStateKey \
	./internal/tracing:FuzzTraceContext \
	./pullapi:FuzzDecodePosition \
	./pullapi:FuzzParseTokens \
	./ops:FuzzParseOffsets \
	./ops:FuzzParseRanges \
	./connectors:FuzzRenderIsSafe \
	./connectors:FuzzSpliceMatchesDecode \
	./connectors:FuzzParquetRoundTrip \
	./connectors:FuzzPackRoundTrip \
	./connectors:FuzzUnpack \
	./connectors/archive:FuzzDecode \
	./connectors:FuzzParquetColumns \
	./connectors:FuzzParquetShaped \
	./connectors:FuzzAvroShaped \
	./connectors/iceberg:FuzzParseOffsets \
	./connectors/iceberg:FuzzParsePartitions

fuzz: ## run every fuzz target for FUZZTIME (default 50000x executions; e.g. FUZZTIME=1m)
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh $(FUZZ_TARGETS)

bench: build ## run the benchmarks: per-stage ones, then 1,000,000 events through a broker (BENCH_EVENTS): each stage, then the whole pipeline in one process, then the pull API under 50 and 500 followers (PULL_FOLLOWERS)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./scripts/bench-kafka.sh
	./scripts/bench-pipeline.sh
	./scripts/bench-pull.sh

tools: $(STATICCHECK) $(VERSITYGW) $(KINESALITE) $(DUCKDB) ## install what the tests need: kcat, promtool, python3-avro, podman and runc (Debian), staticcheck and versitygw (Go), kinesalite and DuckDB (npm)
	@pkgs=""; \
	  command -v kcat >/dev/null 2>&1 || pkgs="$$pkgs kcat"; \
	  command -v promtool >/dev/null 2>&1 || pkgs="$$pkgs prometheus"; \
	  /usr/bin/python3 -c 'import avro.datafile' >/dev/null 2>&1 || pkgs="$$pkgs python3-avro"; \
	  if [ -n "$$pkgs" ]; then \
	    echo "installing$$pkgs from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs; \
	  fi
	@# podman with what it recommends (its storage and runtime helpers), and
	@# runc, which scripts/with-podman.sh configures as the runtime.
	@if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then \
	  echo "installing podman and runc from Debian's packages"; \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc; } \
	    || echo "podman could not be installed: the container tests will skip"; \
	fi

# Every pin must resolve on the registries, asked afresh: the Go pins through
# an empty, throw-away module cache (a cached copy would hide a version the
# proxy refuses), the npm pin through the registry.
pins: ## check that every pinned tool version resolves on the Go module proxy and npm
	@tmp=$$(mktemp -d); trap 'chmod -R u+w "$$tmp"; rm -rf "$$tmp"' EXIT; \
	  for pin in $(GO_TOOL_PINS); do \
	    if ! (cd "$$tmp" && GOFLAGS=-modcacherw GOMODCACHE="$$tmp/mod" $(GO) list -m "$$pin" >/dev/null); then \
	      echo "pin $$pin does not resolve on the Go module proxy: pin a module version it serves ($(GO) list -m -versions $${pin%@*})"; exit 1; \
	    fi; \
	    echo "pin $$pin resolves"; \
	  done; \
	  v=$$(npm view "kinesalite@$(KINESALITE_VERSION)" version 2>/dev/null); \
	  if [ "$$v" != "$(KINESALITE_VERSION)" ]; then echo "pin kinesalite@$(KINESALITE_VERSION) does not resolve on npm"; exit 1; fi; \
	  echo "pin kinesalite@$(KINESALITE_VERSION) resolves"; \
	  v=$$(npm view "@duckdb/node-api@$(DUCKDB_VERSION)" version 2>/dev/null); \
	  if [ "$$v" != "$(DUCKDB_VERSION)" ]; then echo "pin @duckdb/node-api@$(DUCKDB_VERSION) does not resolve on npm"; exit 1; fi; \
	  echo "pin @duckdb/node-api@$(DUCKDB_VERSION) resolves"

$(STATICCHECK):
	mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install $(STATICCHECK_MOD)/cmd/staticcheck@$(STATICCHECK_VERSION)
	touch $@

# The S3-compatible server the S3 tests run against; about two minutes to
# build on a new machine.
$(VERSITYGW):
	mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install $(VERSITYGW_MOD)/cmd/versitygw@$(VERSITYGW_VERSION)
	touch $@

# The Kinesis server the Kinesis tests run against, from npm.
$(KINESALITE):
	mkdir -p $(TOOLS)/kinesalite
	cd $(TOOLS)/kinesalite && npm install --no-audit --no-fund --loglevel=error kinesalite@$(KINESALITE_VERSION)
	touch $@

# DuckDB, the independent reader the Parquet tests query the output with:
# its Node package ships the engine (about 70 MB).
$(DUCKDB):
	mkdir -p $(TOOLS)/duckdb
	cd $(TOOLS)/duckdb && npm install --no-audit --no-fund --loglevel=error @duckdb/node-api@$(DUCKDB_VERSION)
	touch $@

clean: ## remove build output, test tools installed in the tree and the dev data dir
	rm -rf bin .firehose .tools
