# Continuo: `make run` opens the studio, `make test` runs the tests. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# On the project's build machines pip finds this CPU build on local disk; elsewhere it is a normal PyPI torch.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.continuo-installed

.PHONY: setup system native run lint test fuzz bench dist clean

setup: $(STAMP)

# The editable install runs hatch_build.py, which compiles the C step (step.c) into music_transformer/_native.
$(STAMP): pyproject.toml Makefile hatch_build.py music_transformer/step.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,plots,train]"
	touch $@

# System packages the tests and the built-in synth need (Debian, as root); a no-op elsewhere or when present.
system:
	bash scripts/install-system-packages.sh

# The C step's variants again, after step.c changes (the editable install builds them the first time).
native:
	$(PYTHON) hatch_build.py

run: setup
	$(VENV)/bin/continuo

# What `ruff check` and `ruff format --check` read (settings in pyproject.toml). The library, its tests
# and the benchmarks keep their hand-wrapped layout, so the formatter reads only the studio's code.
LINT_PATHS := continuo music_transformer tests bench scripts hatch_build.py
FORMAT_PATHS := continuo tests/continuo scripts

lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(FORMAT_PATHS)

# The system packages first: gcc among them, which the editable install needs to build the C step.
test: system setup lint
	bash scripts/run-tests.sh $(PY)

# The fuzz suites at length: the model library's (tests/music_transformer/test_fuzz.py, 1,500 examples a test
# instead of 40) and the studio's (tests/continuo/test_fuzz.py: sessions, autosave journals, launches over a damaged
# autosave folder, edit sequences; 1,000 examples a test instead of 30, 25 launches instead of 2).
fuzz: setup
	CONTINUO_FUZZ=long OMP_NUM_THREADS=1 $(PY) -m pytest tests/music_transformer/test_fuzz.py -q
	CONTINUO_FUZZ=long OMP_NUM_THREADS=1 bash scripts/run-tests.sh $(PY) tests/continuo/test_fuzz.py -q

bench: setup
	$(VENV)/bin/music-transformer bench

# The sdist and the wheel (for this platform, with the C step's compiled variants, the bundled model,
# assets/default.safetensors and default.json, and its card inside) in dist/; the sdist compiles the C step when
# it is installed. No build isolation: the backend (hatchling) and `build` come with the test extras that setup
# installs, so this needs no package index. Install the wheel with `pipx install dist/continuo-*.whl`.
dist: setup
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	@ls -l dist

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .cache/ruff music_transformer/_native
