# qT1 study book. Two commands on a fresh machine:
#   make book   -> creates .venv if missing, installs the pinned environment, runs every notebook with
#                  papermill on the embedded `quick` profile and renders the Jupyter Book to _build/html
#   make test   -> same bootstrap, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qt1lib-installed
PROFILE ?= quick

.PHONY: venv book test test-fast bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c requirements.lock -e ".[test]"
	touch $(STAMP)

# MathJax 3 from the npm registry, so that the book renders its equations offline too
# (best effort: without npm the book falls back to MathJax from its CDN).
MATHJAX := $(VENV)/share/mathjax/es5/tex-chtml.js
$(MATHJAX): | $(STAMP)
	-mkdir -p $(VENV)/share/mathjax && cd $(VENV)/share/mathjax && npm pack -q mathjax@3.2.2 >/dev/null \
	  && tar xzf mathjax-3.2.2.tgz --strip-components=1 && rm -f mathjax-3.2.2.tgz

venv: $(STAMP) $(MATHJAX)

book: $(STAMP) $(MATHJAX)
	$(PY) -m qt1lib.study --profile $(PROFILE)

test: $(STAMP) $(MATHJAX)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not book"

bench: $(STAMP)
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf _build
