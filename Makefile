# Two commands do all the set-up:  `make demo` (the main job) and `make test` (the tests).
# Both install what is missing into the current Python environment first.
PYTHON ?= python
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: install demo test test-all bench preview

# torch: whatever torch is installed is kept (a GPU user's CUDA build is never replaced);
# only an environment without torch gets the CPU wheel, so no CPU user downloads CUDA.
# The editable install is redone when pyproject.toml changes or it points at another checkout
# (checked from /, so the checkout on the current directory's path cannot fake it).
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	@(cd / && $(PYTHON) -c "import pathlib, stem2d, hydra_plugins.stem2d_optuna_sweeper; \
	  assert pathlib.Path(stem2d.__file__).resolve().parents[1] == pathlib.Path('$(CURDIR)').resolve()") 2>/dev/null \
	  && [ $(STAMP) -nt pyproject.toml ] \
	  || { $(PIP) install -e ".[test]" && touch $(STAMP); }

demo: install
	$(PYTHON) infer.py

test: install
	$(PYTHON) -m pytest -q --durations=10   # prints the 10 slowest tests; the default run skips `slow` ones

test-all: install
	$(PYTHON) -m pytest -q -m "slow or not slow"

bench: install
	$(PYTHON) -m stem2d.bench

preview: install
	$(PYTHON) -m stem2d.sim.preview --out preview.png
