# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here (not in pyproject) so CPU machines take the CPU wheel; GPU users install their own.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

$(BIN)/spatialgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/spatialgen

demo: setup
	$(BIN)/spatialgen generate --prompts examples/demo-prompts.txt --n 2 --out outputs/shapes
	$(BIN)/spatialgen generate "a red cube to the left of a blue sphere" --n 4 --out outputs/generate
	$(BIN)/spatialgen generate "a red cube to the left of a blue sphere" --n 2 --method ildm --out outputs/ildm
	$(BIN)/spatialgen generate "a red cube to the left of a blue sphere" --n 4 --method infsplign --save-attention --out outputs/infsplign
	$(BIN)/spatialgen scenes preview --out outputs/scenes-preview.png

test: setup
	$(BIN)/python -m pytest -n 2 -q

lint: setup
	$(BIN)/ruff check src tests benchmarks tools

bench: setup
	$(BIN)/python benchmarks/scenes_speed.py
	$(BIN)/python benchmarks/embedded_model.py
	$(BIN)/python benchmarks/eval_suite.py
	$(BIN)/python benchmarks/ildm.py --model embedded
	$(BIN)/python benchmarks/infsplign.py overhead
	$(BIN)/python benchmarks/infsplign.py effect

clean:
	rm -rf $(VENV) outputs .pytest_cache
