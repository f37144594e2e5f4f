# hashfs — see README.md. `make demo` and `make test` are the two commands.
SHELL     := /bin/bash
GO        ?= go
MNT       ?= /tmp/hashfs-demo
DEMO_DEPS := fuse3
TEST_DEPS := fuse3 docker-registry r-base-core python3-pandas attr curl ca-certificates systemd skopeo
# Go tools the integration tests run, installed with `go install` (GOBIN, else GOPATH/bin).
GO_TOOLS  := oras.land/oras/cmd/oras@v1.3.6 github.com/google/go-containerregistry/cmd/crane@v0.22.1
UNIT_PKGS := ./internal/... ./fetch/... ./cache/... ./manifestview/... ./fs/... ./cmd/... ./bench/...
# A count, not a duration: Go 1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" when a duration ends on a busy machine (go.dev/issue/75804).
FUZZTIME  ?= 200000x

.PHONY: build demo deps test vet fmt-check unit fuzz integration bench

build:
	$(GO) build -o bin/hashfs ./cmd/hashfs

# Set up and run the main job on the embedded default (no network, no registry).
demo: build
	./scripts/install-deps.sh $(DEMO_DEPS)
	mkdir -p $(MNT)
	./bin/hashfs demo $(MNT)

deps:
	./scripts/install-deps.sh $(TEST_DEPS)
	GO=$(GO) ./scripts/install-go-tools.sh $(GO_TOOLS)

# Install what the tests need and run the whole suite (what CI runs).
test: deps vet fmt-check unit fuzz integration

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

# Each fuzz target runs a fixed number of inputs (a few seconds each here).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseHex$$' -fuzztime $(FUZZTIME) ./internal/digest
	$(GO) test -run '^$$' -fuzz '^FuzzParseContentRange$$' -fuzztime $(FUZZTIME) ./fetch
	$(GO) test -run '^$$' -fuzz '^FuzzBuild$$' -fuzztime $(FUZZTIME) ./manifestview
	$(GO) test -run '^$$' -fuzz '^FuzzLookupName$$' -fuzztime $(FUZZTIME) ./fs

# Real FUSE mounts against the in-process and the Debian CNCF registry.
integration:
	$(GO) test -count=1 -timeout 25m -v ./integration/

bench:
	$(GO) run ./bench
