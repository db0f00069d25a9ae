# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go

.PHONY: run test bench build

run: build ## the whole pipeline in one process on embedded defaults, with demo traffic
	@# The built binary, not `go run`: go run exits 1 on Ctrl-C, mercury exits 0 after a clean stop.
	./mercury up --demo

test: ## vet, formatting and every test (tests needing avropipe/kcat skip without them)
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) test -count=1 ./...

bench: ## every benchmark; figures go to docs/BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd bench && $(GO) test -run '^$$' -bench . -benchmem ./...

build:
	$(GO) build -o mercury ./cmd/mercury
