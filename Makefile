# grlhf — one command for the demo, one for the tests. Every install step is inside them.
#
#   make demo    set up, build, run the main job
#   make test    set up, build, generate parity fixtures with transformers, run every test
#   make bench   decode and vision throughput against transformers; continuous batching against
#                a plain batch; async-RL throughput
#                (grlhf bench: real, simulated, scale), the weight data plane against raw TCP, the
#                control plane across processes against one process, and
#                criterion microbenchmarks, the memory of a 10,000-step run (target/bench/)
#   make soak    a few minutes of training with faults injected, a SIGKILL and a resume; reports
#                what was trained, injected, restarted and lost (runs/soak/soak-report.md)

SHELL := /bin/bash
PY := .venv/bin/python
CARGO ?= cargo

.PHONY: all setup build fixtures test demo bench soak lint clean

all: demo

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p grlhf -p grlhf-bench

fixtures: setup
	$(PY) scripts/make_fixtures.py

# The CUDA parity test runs on its own with --nocapture so that, on a machine without a GPU,
# its "SKIPPED: no CUDA device" line shows in the log instead of being captured. (--workspace
# again, so cargo reuses the build instead of re-resolving features for one package.)
test: setup fixtures
	$(CARGO) test --workspace -- --skip cuda_
	$(CARGO) test --workspace -- cuda_ --nocapture

# The main job: Generative RLHF-V end to end on the embedded world (warm starts, stage 1, stage 2
# for the full method and the score-only baseline, evaluation, report) — see docs/reproduction.md.
demo: build
	target/release/grlhf doctor
	target/release/grlhf pipeline configs/demo.toml

bench: build
	bash benchmarks/decode.sh
	bash benchmarks/slots.sh
	bash benchmarks/vision.sh
	bash benchmarks/async.sh
	bash benchmarks/weights.sh
	bash benchmarks/control_plane.sh
	bash benchmarks/worker_loss.sh
	bash benchmarks/memory.sh

soak: build
	bash scripts/soak.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf runs
