# audiosim: `make demo` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN := torch==2.13.0
DEMO_DIR ?= /tmp/audiosim-demo

.PHONY: demo test venv install install-demo install-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(VENV)/bin/python

# The demo needs only the core and LiteRT (YAMNet's TFLite runtime); the tests need every extra.
install-demo: venv
	$(PIP) install -q -e '.[litert]'

# Everything (TensorFlow for YAMNet/VGGish SavedModels, torch for PANNs/VAE, the service, Ray);
# torch pinned so pip takes the CPU wheel, not GBs of CUDA.
install: venv
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[all]'

install-test: venv
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[all,test]'

demo: install-demo
	$(PY) scripts/demo.py --dir $(DEMO_DIR)

test: install-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
