# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch and torchaudio from the project's ranges; override e.g. TORCH="torch==2.9.1" if needed.
TORCH  ?= torch>=2.9

.PHONY: run demo test venv dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Re-install when the project metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[dev]"
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## make run: start the browser workbench on http://127.0.0.1:7860 (Ctrl-C stops it)
run: $(VENV)/.installed
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/neuromix ui --host 127.0.0.1 --port 7860

## make demo: render the demo song, its rule-based mix and settings into out/demo (no browser)
demo: $(VENV)/.installed
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/neuromix demo --output out/demo --force

## make test: the whole suite (slow tests included)
test: $(VENV)/.installed-dev
	@if ls tests/test_browser*.py >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then \
		echo "installing Debian chromium for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; fi
	GRADIO_ANALYTICS_ENABLED=False GLOO_SOCKET_IFNAME=lo $(BIN)/python -m pytest tests -q

bench: $(VENV)/.installed
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
