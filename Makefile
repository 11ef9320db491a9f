# Firehose — make help lists the targets.
#
# Everything a target needs is installed by the target itself, from the Go
# module proxy or Debian's packages, so a fresh machine needs only Go.

GO          ?= go
BIN         := bin/firehose
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
STATICCHECK_VERSION := 2026.2.2
VERSITYGW   := $(GOBIN)/versitygw
VERSITYGW_VERSION := v1.8.0
KINESALITE  := .tools/kinesalite/node_modules/kinesalite/package.json
KINESALITE_VERSION := 3.3.3
# Run apt-get as root, or through sudo when there is one.
SUDO        := $(shell [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null && echo sudo)
# Fuzz budgets are counts, not durations: Go 1.26's fuzz coordinator can
# fail a target with "context deadline exceeded" when a duration runs out
# under load (golang/go#75804, fixed in Go 1.27). A count has no deadline.
FUZZTIME    ?= 50000x

.DEFAULT_GOAL := help
.PHONY: help build run test unit lint alerts fuzz bench tools clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/firehose
	$(GO) build -o $(BIN) ./cmd/firehose

run: build ## start firehose dev: embedded broker, processor, file connector, demo events
	./$(BIN) dev

test: tools lint alerts unit fuzz ## everything CI checks: lint, alert rules, go test -race ./..., short fuzz runs

unit: tools
	$(GO) test -race -count=1 -timeout 20m ./...

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

alerts: tools ## check the Prometheus alert rules and prove each fires (promtool)
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

# Each fuzz target runs for FUZZTIME; go test -fuzz takes one target at a time.
FUZZ_TARGETS := \
	./schemas:FuzzJSONDecode \
	./schemas:FuzzAvroDecode \
	./internal/config:FuzzParse \
	./internal/config:FuzzExpand \
	./filter:FuzzMatch \
	./processor:FuzzMaskFunctions \
	./processor:FuzzMaskerApply \
	./pullapi:FuzzDecodePosition \
	./internal/config:FuzzParseTokens \
	./internal/ops:FuzzParseOffsets

fuzz: ## run every fuzz target for FUZZTIME (default 50000x executions; e.g. FUZZTIME=1m)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

bench: build ## run the benchmarks: per-stage ones, then 1,000,000 events through a broker (BENCH_EVENTS)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./scripts/bench-kafka.sh

tools: $(VERSITYGW) $(KINESALITE) ## install what the tests need: kcat and promtool (Debian), versitygw (Go), kinesalite (npm)
	@pkgs=""; \
	  command -v kcat >/dev/null 2>&1 || pkgs="$$pkgs kcat"; \
	  command -v promtool >/dev/null 2>&1 || pkgs="$$pkgs prometheus"; \
	  if [ -n "$$pkgs" ]; then \
	    echo "installing$$pkgs from Debian's packages"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs; \
	  fi

# The Kinesis server the Kinesis tests run against, from npm.
$(KINESALITE):
	mkdir -p .tools/kinesalite
	cd .tools/kinesalite && npm install --no-audit --no-fund --loglevel=error kinesalite@$(KINESALITE_VERSION)

# The S3-compatible server the S3 tests run against; about two minutes to
# build the first time, then kept in the Go bin directory.
$(VERSITYGW):
	@echo "installing versitygw $(VERSITYGW_VERSION) (first time only, about two minutes)"
	$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean: ## remove build output, test tools installed in the tree and the dev data dir
	rm -rf bin .firehose .tools
