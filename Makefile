# Every target builds what it needs from nothing: a fresh clone and `make demo` / `make test` is enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The shielded-payment toolchain (circom2, snarkjs, circomlib) from the npm registry, pinned in
# package-lock.json.
NODE_STAMP := node_modules/.installed

.PHONY: demo test test-fast lint typecheck clean zk-vectors bench-zk prometheus

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# npm draws its own progress bar on a terminal; the two echo lines say what runs and how long it took
# in a log (about 20-30 s from the registry the first time).
$(NODE_STAMP): package.json package-lock.json
	@echo "npm ci: installing circom2, snarkjs and circomlib (package-lock.json) into node_modules ..."
	@start=$$(date +%s); npm ci --no-audit --no-fund --loglevel=error --progress=true \
	  && echo "npm ci: done in $$(( $$(date +%s) - start )) s"
	@touch $(NODE_STAMP)

demo: $(STAMP) $(NODE_STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

# The Prometheus server and promtool that the metrics system test runs against (Debian's `prometheus`
# package). Does nothing when both are on PATH; otherwise installs the package with apt-get (as root,
# or through sudo). The test skips, saying why, if they still cannot be found.
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then \
		echo "prometheus: $$(command -v prometheus), promtool: $$(command -v promtool)"; \
	else \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		echo "installing Debian's prometheus package (prometheus, promtool) with apt-get"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; \
	fi

# Regenerate the Groth16 test vectors (development ceremony, not for production).
zk-vectors: $(NODE_STAMP)
	scripts/make_zk_vectors.sh

bench-zk: $(STAMP)
	$(BIN)/python scripts/bench_groth16.py

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check p2pnode tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .mypy_cache
