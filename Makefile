# The two commands of the README's quick start. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
BASE   := $(VENV)/.installed

.PHONY: test demo install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependency list changes. The demo needs only the runtime dependencies
# (about a minute); the tests add the official tools and the PyTorch references.
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $(BASE)

$(STAMP): pyproject.toml $(BASE)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# loadfile: a test file runs on one worker, so its module-scoped fixtures (trained runs,
# converted checkpoints, multi-process jobs) are built once, not once per worker.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

demo: $(BASE)
	$(BIN)/python -m vision_banana.demo --out demo_out

clean:
	rm -rf $(VENV) demo_out .pytest_cache
