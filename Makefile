# Two commands do all the set-up:  `make demo` (main job)  and  `make test` (tests).
PYTHON ?= python
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: install demo test test-all bench preview weights

# torch: keep whatever torch is already installed (a GPU user's CUDA build is never replaced);
# only a machine without torch gets the CPU wheel, so no CPU user downloads CUDA.
$(STAMP): pyproject.toml
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) infer.py

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-all: $(STAMP)
	$(PYTHON) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(PYTHON) -m stem2d.bench

preview: $(STAMP)
	$(PYTHON) -m stem2d.preview
