# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.lloco-installed

.PHONY: demo test test-fast bench serve clean env

env: $(STAMP)

# torch first (a CPU build from this machine's disk unless TORCH_SPEC says otherwise), so nothing
# that depends on it pulls a multi-GB CUDA build; DS_BUILD_OPS=0 keeps DeepSpeed from compiling ops.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q -e ".[dev]"
	# test data only: a real 32k LLaMA SentencePiece model ships inside mistral-common (its code is never imported)
	$(BIN)/python -m pip install -q --no-deps "mistral-common==1.13.1"
	touch $@

demo: $(STAMP)
	$(BIN)/python -m lloco.demo

test: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# One table of side-by-side ratios (bench/run.py); BENCH_ARGS e.g. "--quick", "--only a,e", "--big".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

serve: $(STAMP)
	$(BIN)/lloco serve

clean:
	rm -rf demo_output .pytest_cache
