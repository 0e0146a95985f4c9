# stackblaze — see README.md. `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
GO ?= go
BIN := bin/stackblaze
# The test bed lives in .testbed/ unless STACKBLAZE_TESTBED_DIR says otherwise (hack/testbed/lib.sh).
TESTBED_KUBECONFIG := $(or $(STACKBLAZE_TESTBED_DIR),$(CURDIR)/.testbed)/kubeconfig
# Two cores: keep package-level parallelism low so the test bed's servers keep some CPU.
# -count=1: every run runs every test; an end-to-end result is never taken from the test cache.
GOTEST_FLAGS ?= -p 2 -timeout 45m -count=1

.PHONY: all build test test-unit test-e2e test-testbed-cycle testbed-build testbed-up testbed-down testbed-status deps e2e-tools docs completions release-check bench bench-tunnel bench-upgrade bench-dump demo clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/stackblaze

# deps installs what a fresh machine lacks (PostgreSQL server and client tools).
deps:
	@bash hack/testbed/deps.sh

testbed-build:
	@bash hack/testbed/build.sh >/dev/null

testbed-up: deps
	@bash hack/testbed/up.sh

testbed-down:
	@bash hack/testbed/down.sh

testbed-status:
	@bash hack/testbed/status.sh

# Unit tests only: everything but the end-to-end tests (named TestE2E*).
test-unit:
	$(GO) test $(GOTEST_FLAGS) -skip 'E2E' ./...

# The real migration tools (goose, node-pg-migrate) that `db migrate`'s end-to-end tests run.
e2e-tools:
	@bash hack/e2e-tools.sh >/dev/null

# The whole suite: unit tests and the end-to-end tests against the test bed, brought up first;
# then, alone, the test that takes the test bed down and up again and checks that down leaves
# the machine as up found it (it ends with the test bed down).
test: testbed-up build e2e-tools
	STACKBLAZE_TESTBED_KUBECONFIG=$(TESTBED_KUBECONFIG) STACKBLAZE_E2E_TOOLS=$$(bash hack/e2e-tools.sh) \
		$(GO) test $(GOTEST_FLAGS) ./...
	$(MAKE) test-testbed-cycle

test-testbed-cycle: testbed-up
	STACKBLAZE_TESTBED_KUBECONFIG=$(TESTBED_KUBECONFIG) $(GO) test $(GOTEST_FLAGS) -tags testbedcycle -run '^TestE2ETestbedCycle$$' ./internal/testbed/

test-e2e: testbed-up build e2e-tools
	STACKBLAZE_TESTBED_KUBECONFIG=$(TESTBED_KUBECONFIG) STACKBLAZE_E2E_TOOLS=$$(bash hack/e2e-tools.sh) \
		$(GO) test $(GOTEST_FLAGS) -run 'E2E' ./...

# Regenerate the command reference (docs/reference), man pages (docs/man) and completions/.
docs completions:
	$(GO) run ./cmd/gen-docs

# Validate .goreleaser.yaml with goreleaser's own check and build a snapshot for this machine.
release-check:
	bash hack/goreleaser.sh check
	bash hack/goreleaser.sh build --snapshot --clean --single-target --output dist/stackblaze-snapshot
	./dist/stackblaze-snapshot version

# Benchmarks (figures and how to read them: docs/benchmarks.md).
bench: testbed-up build
	@echo "## Start-up (never touches the cluster)"; bash hack/bench/startup.sh
	@echo; echo "## db list with 500 databases"
	STACKBLAZE_TESTBED_KUBECONFIG=$(TESTBED_KUBECONFIG) $(GO) test ./internal/kube -run '^$$' -bench BenchmarkE2EList500 -benchtime 20x
	@echo; echo "## Tunnel"; bash hack/bench/tunnel.sh
	@echo; echo "## Major version upgrade"; bash hack/bench/upgrade.sh
	@echo; echo "## Dump"; bash hack/bench/dump.sh

bench-tunnel: testbed-up build
	bash hack/bench/tunnel.sh

bench-upgrade: testbed-up build
	bash hack/bench/upgrade.sh

bench-dump: testbed-up build
	bash hack/bench/dump.sh

demo: testbed-up build
	@bash hack/demo.sh

clean:
	rm -rf bin dist
