# Set-up and entry points. Everything installs into .venv from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build: an unpinned torch would pull several GB of CUDA packages. On a GPU machine,
# run e.g. `make TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"`.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,onnx]"
	touch $(STAMP)

setup: $(STAMP)

DEMO := --study demo --storage sqlite:///runs/demo.db
# The demo's search is sized for a few minutes on 2 CPU cores: 5 proxy trials on 2,000 images,
# then the top 2 configurations confirmed with 2 seeds of 6 epochs each.
DEMO_SEARCH := --trials 5 --train-images 2000 --confirm 2 --confirm-seeds 2 --confirm-max-seeds 2 --confirm-epochs 6

demo: setup
	mkdir -p runs
	$(BIN)/resnext-nas budget --template cifar --flops 5e6 --tolerance 0.6 --depths 1,1,1 --depths 2,2,2 --depths 3,3,3 --widths 16,32,64 --cardinalities 1,4,16 --bottleneck-widths 1,3,6
	$(BIN)/resnext-nas search $(DEMO_SEARCH) $(DEMO)
	$(BIN)/resnext-nas trials $(DEMO)
	$(BIN)/resnext-nas dashboard $(DEMO) --out runs/demo-dashboard.html

# One folder of tests/ (mirroring the packages) at a time: e.g. `make test TESTS=tests/search`.
TESTS ?= tests

test: setup
	$(BIN)/python -m pytest -q -m "not slow" $(TESTS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(TESTS)

bench: setup
	$(BIN)/python benchmarks/bench_complexity.py

lint: setup
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
