# Every step a newcomer needs. `make run` starts the sidecar on the default config with a
# demo backend; `make test` runs every gate and test CI runs.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
PLUGIN_DIR := target/$(WASM_TARGET)/plugin
PLUGINS := $(PLUGIN_DIR)/bolt.wasm $(PLUGIN_DIR)/dubbo.wasm $(PLUGIN_DIR)/misbehave.wasm
CONFIG ?= configs/mosn_rpc_config_wasm.json

.PHONY: all run test plugins wasm-target build build-release peers dubbo-peers services lint layers unit bench clean-bench help fuzz fuzz-smoke fuzz-build fuzz-corpus fuzz-tools
.PHONY: filters lint-filters

all: build

help:
	@echo "make run     build plugin + sidecar, start the sidecar on $(CONFIG) with a demo echo backend"
	@echo "make test    lint + all tests (unit, plugin, integration, real SOFA peers)"
	@echo "make bench   codec micro-benchmark + end-to-end benchmark (writes bench-results/)"
	@echo "make plugins build the Wasm codec plugins into $(PLUGIN_DIR)"
	@echo "make filters build the proxy-wasm filter plugins (filters/) into $(FILTER_WASM_DIR)"
	@echo "make dubbo-peers build the Apache Dubbo test peers (Java 17 + Maven)"
	@echo "make layers  check every crate for import cycles and imports against layers.txt"
	@echo "make fuzz    run every fuzz target for FUZZ_SECONDS (default $(FUZZ_SECONDS)) each (cargo-fuzz, nightly)"
	@echo "make fuzz-smoke  every fuzz target for FUZZ_SMOKE_SECONDS (default $(FUZZ_SMOKE_SECONDS)) each (part of make test)"
	@echo "make services install Redis and Envoy's rate limit service for the tests (tools/services.sh)"

wasm-target:
	rustup target add $(WASM_TARGET)

plugins: wasm-target
	$(CARGO) build --target $(WASM_TARGET) --profile plugin -p bolt -p dubbo -p misbehave

# proxy-wasm stream filter plugins (filters/: a workspace of its own, see filters/README.md),
# built into target/filters and copied to stable paths ($(FILTER_WASM_DIR)/filter_<name>.wasm);
# filters/check_wasm.py then checks the exports every host needs.
FILTER_TARGET_DIR := target/filters
FILTER_WASM_DIR := $(FILTER_TARGET_DIR)/wasm
FILTER_NAMES := add_header deny count pause noop misbehave unknown_import abi010 queue
GO ?= go
# The Go filter (filters/go-add-header: official Go toolchain, no SDK, no dependencies).
GO_FILTER_BUILD := cd filters/go-add-header && GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared

filters: wasm-target
	$(CARGO) build --manifest-path filters/Cargo.toml --target $(WASM_TARGET) --release --target-dir $(FILTER_TARGET_DIR)
	mkdir -p $(FILTER_WASM_DIR)
	for f in $(FILTER_NAMES); do cp $(FILTER_TARGET_DIR)/$(WASM_TARGET)/release/filter_$$f.wasm $(FILTER_WASM_DIR)/; done
	$(GO_FILTER_BUILD) -o $(abspath $(FILTER_WASM_DIR))/go_add_header.wasm .
	python3 filters/check_wasm.py $(FILTER_WASM_DIR)/*.wasm

lint-filters: wasm-target
	$(CARGO) fmt --manifest-path filters/Cargo.toml --all -- --check
	$(CARGO) clippy --manifest-path filters/Cargo.toml --target $(WASM_TARGET) --target-dir $(FILTER_TARGET_DIR) -- -D warnings
	test -z "$$(gofmt -l filters/go-add-header)" || { gofmt -l filters/go-add-header; exit 1; }
	cd filters/go-add-header && GOOS=wasip1 GOARCH=wasm $(GO) vet .

build: plugins
	$(CARGO) build --workspace --bins

build-release: plugins
	$(CARGO) build --release -p sidecar -p integration --bins

peers:
	cd integration/peers && if [ -n "$$CI" ] || [ ! -d node_modules ]; then npm ci --no-audit --no-fund; fi

# The Apache Dubbo 3.3.6 provider and consumer of the Dubbo end-to-end tests (Java 17, Maven;
# dependencies from Maven Central into ~/.m2): target/classes and target/classpath.txt.
dubbo-peers:
	cd integration/peers/dubbo && mvn -q -B package

# Redis (Debian package) and Envoy's rate limit service (built from the Go module proxy) for
# the global rate limit tests; idempotent.
services:
	tools/services.sh install

# The demo backend is the fast Rust Bolt echo server on the app port of the default config.
run: build
	@set -e; \
	target/debug/bolt-echo --listen 127.0.0.1:12199 & echo_pid=$$!; \
	trap 'kill $$echo_pid 2>/dev/null' EXIT INT TERM; \
	echo "demo backend (bolt-echo) on 127.0.0.1:12199; sidecar on :2045 (client side) and :2046 (server side)"; \
	target/debug/sidecar start -c $(CONFIG)

lint: layers lint-filters
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p codec-sdk -p bolt -p dubbo -p misbehave -- -D warnings

# Import cycles between the modules of each crate, and imports against the order declared in
# layers.txt (see tools/check_layers.py for the rules).
layers:
	python3 tools/check_layers.py

# `cargo test` builds the binaries the end-to-end tests run (target/debug/sidecar, bolt-echo)
# with the test feature set; a separate `cargo build --bins` would compile wasmer once more.
# The tests run inside `tools/services.sh run`: it starts Redis and the rate limit service on
# free loopback ports, passes their addresses (RATELIMIT_ADDR, ...) and stops both afterwards,
# also when a test fails.
unit: plugins filters peers dubbo-peers services
	python3 -m unittest tools/test_check_layers.py
	tools/services.sh run -- $(CARGO) test --workspace

test: lint unit fuzz-smoke

# Coverage-guided fuzzing (fuzz/: cargo-fuzz on the nightly toolchain, its own workspace and
# target dir). Corpora live in fuzz/corpus/<target>/ (not committed), seeded from the captured
# Bolt frames by fuzz/seed.py; a crash stops the run and leaves its input in
# fuzz/artifacts/<target>/. Extra libFuzzer options: FUZZ_OPTS=... (e.g. -jobs=2).
FUZZ ?= cargo +nightly fuzz
FUZZ_TARGETS := bolt_decode abi_layouts guest_memory
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_OPTS ?=

# The nightly toolchain and cargo-fuzz, installed when missing (so `make test` sets itself up).
fuzz-tools:
	@rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2

fuzz-build: fuzz-tools
	$(FUZZ) build

fuzz-corpus:
	python3 fuzz/seed.py

define run_fuzz_targets
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(1) s"; \
		$(FUZZ) run $$t -- -max_total_time=$(1) -timeout=10 -print_final_stats=1 $(FUZZ_OPTS); \
	done; \
	echo "fuzz: $(words $(FUZZ_TARGETS)) passed, 0 failed"
endef

fuzz: fuzz-build fuzz-corpus
	$(call run_fuzz_targets,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build fuzz-corpus
	$(call run_fuzz_targets,$(FUZZ_SMOKE_SECONDS))

bench: build-release filters
	$(CARGO) bench -p codec-host --bench codec
	$(CARGO) bench -p sidecar --bench stats
	target/release/benchrun --out bench-results
	tools/dubbo-bench.sh 3 | tee bench-results/dubbo-bench.txt
	tools/filter-bench.sh 3 | tee bench-results/filter-bench.txt
