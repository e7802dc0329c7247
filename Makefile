# replproxy: see README.md "Make targets".

GO         ?= go
# git describe fails on a tree without commits or without git; "dev" then.
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X main.version=$(VERSION)
FUZZTIME   ?= 20s
ROUNDS     ?= 3
BENCHFLAGS ?= -rounds $(ROUNDS)
RUNFLAGS   ?=

.PHONY: build run test bench fuzz lint fmt-check vet clean deps clientlibs-deps

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/replproxy ./cmd/replproxy

# Builds itself: run-local.sh calls `make build`.
run:
	deploy/run-local.sh $(RUNFLAGS)

test: deps clientlibs-deps lint
	$(GO) test -race -count=1 -timeout 30m ./...

bench: build
	$(GO) run ./internal/benchrun $(BENCHFLAGS)

fuzz:
	FUZZTIME=$(FUZZTIME) deploy/fuzz-all.sh

lint: fmt-check vet

fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need gofmt -w:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile

deps:
	deploy/ensure-redis.sh

# The Node client libraries internal/clientlibs runs, as package-lock.json
# pins them. Without npm nothing is installed: the test then fails when
# CI=true and skips elsewhere, saying why.
clientlibs-deps:
	@if [ ! -f internal/clientlibs/node_modules/.package-lock.json ]; then \
		if command -v npm >/dev/null; then cd internal/clientlibs && npm ci --no-audit --no-fund; \
		else echo "npm not found: internal/clientlibs will fail (CI=true) or skip"; fi; \
	fi

# Deployment (deploy/README.md). image and compose-up need Docker;
# deploy-test runs the deployment files' tests alone (make test runs them too).
.PHONY: image compose-up deploy-test

image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) -t replproxy:$(VERSION) .

compose-up:
	REPLPROXY_VERSION=$(VERSION) docker compose -f deploy/docker-compose.yml up --build

deploy-test: deps
	$(GO) test -race -count=1 -timeout 14m ./deploy/
