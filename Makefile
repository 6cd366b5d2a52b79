# skyroute: every target makes its own virtual environment first, so a fresh
# clone needs nothing but python3 (and, for the tests, root for apt-get).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Every install is pinned with hashes: requirements/dev.txt here (and in CI), router.txt
# and operator.txt in the images, build.txt for the wheel's build backend (`make lock`).
LOCK    := requirements/dev.txt
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
PKGDIRS := proto/skyroute operator/skyroute dataplane/skyroute simulator/skyroute cli/skyroute

.PHONY: venv lock proto reference lint layers typecheck system-deps test demo bench bench-feedback clean

# Coverage floor for `make test`: the figure measured when the floor was set (92.4%,
# `make test` on 2026-12-03), rounded down. Raise it when coverage rises; never lower it.
COVERAGE_FLOOR ?= 92

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Re-resolve requirements/*.txt after a change to pyproject.toml (pins already there are
# kept; `make lock UPGRADE=--upgrade` moves every pin to the newest allowed release).
# One lock per install: the router image (base), the operator image, development and CI,
# the build backend, and the self-hosted test's llama-cpp-python server (not installed
# into .venv: hack/llama/server.sh gives it a venv of its own). Universal: markers cover
# every platform and Python >= 3.11.
COMPILE = $(BIN)/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	  --custom-compile-command 'make lock' $(UPGRADE)
lock:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q 'uv>=0.5'
	$(COMPILE) pyproject.toml -o requirements/router.txt
	$(COMPILE) pyproject.toml --extra operator -o requirements/operator.txt
	$(COMPILE) pyproject.toml --extra dev -o requirements/dev.txt
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))\
	  ['build-system']['requires'], sep='\n')" > requirements/build.in
	$(COMPILE) requirements/build.in -o requirements/build.txt
	$(COMPILE) requirements/llama-server.in -o requirements/llama-server.txt

# Regenerate the contract's Python code (checked fresh by tests/test_proto_fresh.py).
proto: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I proto \
	  --python_out=proto --grpc_python_out=proto --mypy_out=proto --mypy_grpc_out=proto \
	  proto/skyroute/v1/*.proto

# Regenerate docs/policy-reference.md from crds/ (checked fresh by tests/cli/test_reference.py).
reference: $(STAMP)
	$(BIN)/python -m skyroute.cli.reference

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Which layer may import which (.importlinter; the README's "Layers" section).
layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	cd $(CURDIR) && $(BIN)/mypy $(PKGDIRS)

# Servers the tests start for real: redis-server (Debian) for shared router state; and
# what pip compiles llama-cpp-python's server with (cmake, g++: hack/llama/server.sh).
system-deps:
	@test -x /usr/bin/redis-server || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@{ command -v cmake && command -v g++; } >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null; }

# The cluster binaries and llama-cpp-python's server (the self-hosted family's real
# peer, requirements/llama-server.txt) build niced, in the background, logs in
# .venv/cluster-bins.log and .venv/llama-server.log, while the other suites run; the
# tests needing them run last and wait for their build (tests/conftest.py). Cached
# under ~/.cache/skyroute, the build steps return at once.
test: lint layers typecheck system-deps
	@bash hack/llama/server.sh --check >/dev/null 2>&1 || { \
	  echo "building llama-cpp-python's server in the background (log: $(VENV)/llama-server.log)"; \
	  nice -n 10 bash hack/llama/server.sh >$(VENV)/llama-server.log 2>&1 & }
	@bash hack/cluster/bins.sh --check 2>/dev/null || { \
	  echo "building the test cluster's binaries in the background (log: $(VENV)/cluster-bins.log)"; \
	  nice -n 10 bash hack/cluster/bins.sh >$(VENV)/cluster-bins.log 2>&1 & }
	$(BIN)/pytest -q --cov --cov-report=term:skip-covered \
	  --cov-fail-under=$(COVERAGE_FLOOR)

demo: $(STAMP)
	$(BIN)/skyroute demo

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/cache_bench.py
	$(BIN)/python bench/cache_eval.py
	$(BIN)/python bench/guards_bench.py
	$(BIN)/python bench/tokens_bench.py
	$(BIN)/python bench/learned_signal.py

# Quality learned from feedback, replayed through the real processes (README's plot:
# docs/feedback-share.svg, rewritten with this run's figures).
bench-feedback: $(STAMP)
	$(BIN)/python bench/feedback_replay.py --docs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage .coverage.*

# Test cluster for the k8s suites: etcd (Debian) + kube-apiserver/kubectl built
# once from the pinned k8s.io/kubernetes module, and helm (deploy/helm) from the
# pinned helm.sh/helm module, into ~/.cache/skyroute (slow the first time). `export KUBECONFIG=$$(make -s cluster-up)` for a shell.
.PHONY: cluster-bins cluster-up cluster-down

cluster-bins:
	bash hack/cluster/bins.sh

cluster-up: cluster-bins
	@bash hack/cluster/up.sh

cluster-down:
	@bash hack/cluster/down.sh
