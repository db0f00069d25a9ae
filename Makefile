# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go

.PHONY: run test reliability bench build

run: build ## the whole pipeline in one process on embedded defaults, with demo traffic
	@# The built binary, not `go run`: go run exits 1 on Ctrl-C, mercury exits 0 after a clean stop.
	./mercury up --demo

test: ## vet, formatting, every test (tests needing avropipe/kcat/... skip without them), the fault drill
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) test -count=1 ./...
	@$(MAKE) --no-print-directory reliability

reliability: ## the fault drill (docs/RELIABILITY.md): a million spans through the daemons under SIGKILLs, disk and store faults
	MERCURY_RELIABILITY=1 $(GO) test -count=1 -run '^TestReliability$$' -v -timeout 15m ./reliability/

bench: ## every benchmark; figures go to docs/BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd bench && $(GO) test -run '^$$' -bench . -benchmem ./...

build:
	$(GO) build -o mercury ./cmd/mercury
