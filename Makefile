# audiosim: `make demo` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN := torch==2.13.0
DEMO_DIR ?= /tmp/audiosim-demo
# Wheels that ship real pretrained weights the tests run (resemblyzer: GE2E speaker encoder;
# basic-pitch: nmp.onnx). Installed without their dependencies: audiosim loads only the weights
# (resemblyzer's VAD, webrtcvad, builds from source; basic-pitch's own deps pin TensorFlow).
WEIGHT_WHEELS := resemblyzer==0.1.4 basic-pitch==0.4.0

.PHONY: demo test venv install install-demo install-test clean screenshot

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
	$(PIP) install -q --no-deps $(WEIGHT_WHEELS)

demo: install-demo
	$(PY) scripts/demo.py --dir $(DEMO_DIR)

test: install-test
	$(PY) -m pytest -q

# Refresh docs/serve.png, the page's picture README shows (the tests themselves never write into the clone).
screenshot: install-test
	AUDIOSIM_SCREENSHOT=$(CURDIR)/docs/serve.png $(PY) -m pytest -q tests/test_browser.py -k upload_listen

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
