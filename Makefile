# SofaDB: every target is self-contained on a fresh machine with Go 1.26 installed.
GO      ?= go
SEEDS   ?= 2000
EVENTS  ?= 20000
# make sim: the long soak. Override SOAK_SEEDS for longer runs.
SOAK_SEEDS ?= 20000
# make fuzz: executions per fuzz target (a count, not a time: time-based fuzzing is flaky on Go 1.26).
FUZZ_EXECS ?= 200000

.PHONY: all test unit simtest sim bench fuzz lint build clean

all: build

build:
	$(GO) build ./...

## test: lint, unit and scenario tests, then the simulator seeds and mutation canaries.
test: lint unit simtest

unit:
	$(GO) test -count=1 ./...

simtest:
	$(GO) run ./cmd/paxsim -seeds $(SEEDS) -events $(EVENTS)

## sim: the long randomized soak of the Paxos core (at least 20,000 seeds).
sim:
	$(GO) run ./cmd/paxsim -seeds $(SOAK_SEEDS) -events $(EVENTS)

## fuzz: every Fuzz target in the module, each for FUZZ_EXECS executions.
fuzz:
	FUZZ_EXECS=$(FUZZ_EXECS) scripts/fuzz.sh

## lint: gofmt and go vet.
lint:
	scripts/lint.sh

## bench: the published benchmark run (see README).
bench:
	scripts/bench.sh

clean:
	rm -rf bin
