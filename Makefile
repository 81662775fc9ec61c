# grlhf — one command for the demo, one for the tests. Every install step is inside them.
#
#   make demo    set up, build, run the main job
#   make test    set up, build, generate parity fixtures with transformers, run every test
#   make bench   decode and vision throughput against transformers, sync vs async RL (target/bench/)

SHELL := /bin/bash
PY := .venv/bin/python
CARGO ?= cargo
RUN_DIR ?= runs/demo

.PHONY: all setup build fixtures test demo bench lint clean

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

# Until the pipeline lands, the main job is a health check and generation from a random tiny
# Qwen2 (written to $(RUN_DIR)).
demo: build
	target/release/grlhf doctor
	target/release/grlhf data generate --out $(RUN_DIR)/world --n 280 --seed 0 --force
	target/release/grlhf data show $(RUN_DIR)/world/pairs_ood_error.jsonl -n 2
	target/release/grlhf run configs/tiny-async.toml
	target/release/grlhf init-model --preset tiny --seed 0 --out $(RUN_DIR)/tiny-qwen2
	target/release/grlhf generate --model $(RUN_DIR)/tiny-qwen2 --tokens "1 17 42 99 7" \
		--temperature 0.8 --top-p 0.9 --num-samples 4 --max-new-tokens 16 --seed 0

bench: build
	bash benchmarks/decode.sh
	bash benchmarks/vision.sh
	bash benchmarks/rl.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf runs
