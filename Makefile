# SofaDB: every target is self-contained on a fresh machine with Go 1.26 installed.
GO      ?= go
SEEDS   ?= 2000
EVENTS  ?= 20000
# make sim: the long soak. Override SOAK_SEEDS for longer runs.
SOAK_SEEDS ?= 20000
# make fuzz: executions per fuzz target (a count, not a time: time-based fuzzing is flaky on Go 1.26).
FUZZ_EXECS ?= 200000

# Packages where goroutines meet: their tests also run under the race detector, with the replica
# processes the end-to-end tests start built with -race too (bench/cluster reads SOFADB_BUILD_FLAGS).
RACE_PKGS ?= ./disk/... ./driver/... ./kv/... ./loadgen/... ./replica/... ./bench/... ./cmd/sofabench/...

.PHONY: all deps test unit race simtest sim bench bench-full report fuzz lint build clean chaos powerloss

all: build

build:
	$(GO) build ./...

## test: lint (gofmt, vet, staticcheck), the tests of every package (those where goroutines meet
## under the race detector), then the simulator seeds and mutation canaries.
test: deps lint unit race simtest

## deps: what the tests need beyond Go, from the project's own scripts (etcd for the bench smoke run;
## without it that scenario is skipped, and the report says so).
deps:
	scripts/install-etcd.sh || echo "make: etcd not installed; the bench smoke run will skip its etcd scenario" >&2

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /disk -e /driver -e /kv -e /loadgen -e /replica -e /bench -e /cmd/sofabench)
	# Large values within time bounds: against replicas built without the race detector.
	$(GO) test -count=1 -run 'TestE2EClusterLeadsAgainAfterALargeValueBurst|TestE2ERequestBytesAreBounded|TestE2EOneConnectionCannotTakeTheRequestBudget' ./replica/

race:
	SOFADB_BUILD_FLAGS=-race $(GO) test -race -count=1 $(RACE_PKGS)

simtest:
	$(GO) run ./cmd/paxsim -seeds $(SEEDS) -events $(EVENTS)

## sim: the long randomized soak of the Paxos core (at least 20,000 seeds).
sim:
	$(GO) run ./cmd/paxsim -seeds $(SOAK_SEEDS) -events $(EVENTS)

## chaos: a local cluster through a seeded schedule of network and process faults under a client
## workload, then porcupine on the history, digests, and a read of every key (cmd/sofachaos).
DURATION ?= 10m
SEED     ?= 1
REPLICAS ?= 3
chaos:
	$(GO) run ./cmd/sofachaos -duration $(DURATION) -seed $(SEED) -replicas $(REPLICAS)

## powerloss: CYCLES power losses (every replica, or a random majority, at once) under the same
## workload, each replica's data directory on powerfs, a FUSE file system that drops what was not
## fsync'ed; then the same checks, and no acknowledged write lost. Needs /dev/fuse (root here).
CYCLES ?= 100
powerloss:
	$(GO) run ./cmd/sofachaos -power-cycles $(CYCLES) -seed $(SEED) -replicas $(REPLICAS)

## fuzz: every Fuzz target in the module, each for FUZZ_EXECS executions.
fuzz:
	FUZZ_EXECS=$(FUZZ_EXECS) scripts/fuzz.sh

## lint: gofmt, go vet and staticcheck.
lint:
	scripts/lint.sh

## bench: the default benchmark suite on local clusters it starts (about 10 minutes); the report
## goes to results/<UTC date>-<commit>-default/. SCALE=0.3 for a quick look (not for publishing).
SCALE ?= 1
bench:
	scripts/bench.sh -suite default -scale $(SCALE)

## bench-full: the default suite plus 5 replicas and 10 failovers (about 15 minutes).
bench-full:
	scripts/bench.sh -suite full -scale $(SCALE)

## report: regenerate a report's README.md and plots from its raw files alone: make report DIR=results/...
report:
	@test -n "$(DIR)" || { echo "usage: make report DIR=results/<report>" >&2; exit 2; }
	$(GO) run ./cmd/sofabench -report $(DIR)

clean:
	rm -rf bin
