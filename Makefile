# A new user's three commands (README "Quick start"):
#   make install   a virtual environment, PyTorch for this machine, the project, the assets
#   make test      unit and parity tests, and every notebook under nbval
#   make book      the HTML book in _build/html
# Options: VENV=.venv (VENV= uses the Python already active, e.g. a conda env),
#          TORCH_SPEC="torch>=2.5" (CI pins torch==2.13.0), PYTHON=python3.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch>=2.5
BIN := $(if $(VENV),$(VENV)/bin/)
PY := $(BIN)python

.PHONY: install test book

install:
	@echo "== 1/4 Python environment: $(if $(VENV),$(VENV) (new virtual environment),$(PY))"
	$(if $(VENV),$(PYTHON) -m venv $(VENV))
	$(PY) -m pip install --quiet packaging
	@echo "== 2/4 PyTorch ($(TORCH_SPEC)): the CPU-only wheel on a Linux machine without a GPU"
	$(PY) tools/install_torch.py "$(TORCH_SPEC)"
	@echo "== 3/4 tutorial_lib, the notebook, test and book tools (pip install -e .[dev])"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip list 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|altair|jupyter-book|nbval) '
	npm ci --no-audit --no-fund  # wllama (package-lock.json): the book's in-browser model
	@echo "== 4/4 The offline assets: weights, tokenizers, vectors (about 860 MB, once)"
	$(PY) -m tutorial_lib fetch --all
	$(PY) -m tutorial_lib list
	@echo "Installed. Next: make test (or: source $(VENV)/bin/activate && jupyter lab notebooks/)"

test:
	@echo "== Unit and parity tests, then every notebook under nbval (about 10 minutes on 2 cores)"
	$(PY) -m pytest -q -rs --durations=10

book:
	@echo "== Building the book (notebooks are not re-run: their committed outputs are shown)"
	rm -rf _build/html
	$(BIN)jupyter-book build . -W -n --keep-going
	@echo "Open file://$(CURDIR)/_build/html/index.html in a browser"
