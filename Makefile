# wtpulsar: `make run` starts the whole pipeline, `make test` runs the tests.
# Both create .venv and install everything they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow test-pulsar pulsar bench lint proto package deploy clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/wtpulsar up

# One pytest process by default. TIERS=parallel runs the real-Pulsar tier (mostly waiting on Pulsar's
# JVM and its function worker) in a second process beside the other tests, printing its output after
# theirs and failing if either fails: about 14 min instead of 22 on 2 cores, but the load-sensitive
# tests (memory growth at a paced send rate, latency bounds) then share the cores with Pulsar's JVM.
PULSAR_LOG := .pytest-pulsar-tier.log
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
ifeq ($(TIERS),parallel)
	@echo "make test: the real-Pulsar tier runs beside the other tests; its output follows theirs ($(PULSAR_LOG))"
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m 'pulsar and not slow' > $(PULSAR_LOG) 2>&1 & tier=$$!; \
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not pulsar and not slow'; rest=$$?; \
	wait $$tier; pulsar=$$?; echo "== the real-Pulsar tier ($(PULSAR_LOG)):"; cat $(PULSAR_LOG); \
	echo "make test: other tests exit $$rest, real-Pulsar tier exit $$pulsar"; \
	test $$rest -eq 0 -a $$pulsar -eq 0
else
	$(BIN)/python -m pytest -q -p no:cacheprovider
endif

# The real-Pulsar tier alone: Apache Pulsar standalone (fetched once into ~/.cache/wtpulsar) started by the tests.
test-pulsar: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m pulsar

# Apache Pulsar standalone on 127.0.0.1:16650 (admin http://127.0.0.1:18080), function state on; Ctrl-C stops it.
pulsar: $(STAMP)
	$(BIN)/wtpulsar pulsar

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# ruff, then mypy over every package and tests/ ([tool.mypy] in pyproject.toml: strict, with its exceptions named there).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# One deployable archive per function (build/functions/<name>.zip: <name>/src + <name>/deps/*.whl).
# PYTHON_VERSION / PLATFORM select the worker's interpreter (default: the official Pulsar image's).
package: $(STAMP)
	$(BIN)/python -m deploy.packaging $(if $(PYTHON_VERSION),--python-version $(PYTHON_VERSION)) $(if $(PLATFORM),--platform $(PLATFORM))

# Create tenant, namespace, topics, schemas and functions on Apache Pulsar (ADMIN_URL, default http://localhost:8080).
deploy: $(STAMP)
	$(BIN)/wtpulsar deploy $(if $(ADMIN_URL),--admin-url $(ADMIN_URL))

# Regenerate the protobuf module from our own .proto (needs the dev extra: grpcio-tools).
proto: $(STAMP)
	cd broker/proto && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. pulsar_wire.proto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
