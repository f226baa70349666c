# A new user's two commands (README "Quick start"):
#   make start   sets up if needed, builds the book if needed, serves it on 127.0.0.1
#   make check   sets up if needed, then the unit and parity tests and every notebook (nbval)
# Also: make install (set up, always), make test (= check), make book (rebuild the HTML),
#       make serve (serve the built book), make lock (regenerate constraints.txt).
# Options: VENV=.venv (VENV= uses the Python already active, e.g. a conda env),
#          LOCK=constraints.txt (the exact versions the outputs were made with; LOCK= takes
#          the newest versions pyproject.toml allows), TORCH_SPEC="torch>=2.5" (CI pins
#          torch==2.13.0), PYTHON=python3, PORT=8000.
PYTHON ?= python3
VENV ?= .venv
LOCK ?= constraints.txt
TORCH_SPEC ?= torch>=2.5
PORT ?= 8000
BIN := $(if $(VENV),$(VENV)/bin/)
PY := $(BIN)python
CONSTRAINTS := $(if $(LOCK),-c $(LOCK))
# Set up once: this file records a finished `make install`; it is redone when the project's
# dependencies or the lock change.
STAMP := $(if $(VENV),$(VENV),.cache)/.tutorial-lib-installed
BOOK_SOURCES := $(wildcard notebooks/*.ipynb book/*.md book/*.bib book/_ext/* _static/*) \
	_config.yml _toc.yml

.PHONY: install test check book start serve lock

install:
	@echo "== 1/4 Python environment: $(if $(VENV),$(VENV),$(PY))"
	@if [ -n "$(VENV)" ]; then \
	  if [ -x "$(VENV)/bin/python" ] && "$(VENV)/bin/python" -c "import sys, pip" 2>/dev/null \
	     && [ "$$("$(VENV)/bin/python" -c 'import sys; print(sys.version_info[:2])')" = \
	          "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" ]; then \
	    echo "   $(VENV) exists and works with $$($(PYTHON) --version): reusing it; its packages are brought to the lock below"; \
	  else \
	    echo "   creating $(VENV) afresh ($(PYTHON) -m venv --clear)"; \
	    $(PYTHON) -m venv --clear $(VENV); \
	  fi; \
	fi
	$(PY) -m pip install --quiet packaging
	@echo "== 2/4 PyTorch ($(TORCH_SPEC)): the CPU-only wheel on a Linux machine without a GPU"
	$(PY) tools/install_torch.py "$(TORCH_SPEC)"
	@echo "== 3/4 tutorial_lib and the notebook, test and book tools: pip install -e .[dev] $(if $(LOCK),pinned by $(LOCK),(LOCK= : the newest allowed versions))"
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e ".[dev]"
	$(PY) -m pip list 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|altair|jupyter-book|nbval) '
	npm ci --no-audit --no-fund  # wllama (package-lock.json): the book's in-browser model
	@echo "== 4/4 The offline assets: weights, tokenizers, vectors, the GGUF for the browser (about 880 MB, once)"
	$(PY) -m tutorial_lib fetch --all
	$(PY) -m tutorial_lib list
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)
	@echo "Installed. Next: make check (tests) or make start (the book in your browser)"

$(STAMP): pyproject.toml package-lock.json $(LOCK)
	$(MAKE) install

test check: $(STAMP)
	@echo "== Unit and parity tests, then every notebook under nbval (about 10 minutes on 2 cores)"
	$(PY) -m pytest -q -rs --durations=10

book: $(STAMP)
	@echo "== Building the book (notebooks are not re-run: their committed outputs are shown)"
	rm -rf _build/html
	$(BIN)jupyter-book build . -W -n --keep-going
	@echo "Built: _build/html (make serve shows it at http://127.0.0.1:$(PORT)/)"

_build/html/index.html: $(BOOK_SOURCES) | $(STAMP)
	$(MAKE) book

serve:
	@test -f _build/html/index.html || { echo "No built book: run make book (or make start)"; exit 1; }
	@echo "== Serving the book at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	$(PY) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

start: _build/html/index.html
	@$(MAKE) --no-print-directory serve

lock:
	$(PY) tools/lock.py --python $(PY) --output constraints.txt
