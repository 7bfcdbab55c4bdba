# One task runner for local work and CI. `make demo` and `make test` install what they need first.
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := .venv/bin/python
DURATION ?= 60

.PHONY: setup demo up test test-unit test-containers images lint fmt doctor bench clean

setup:  ## install uv (if missing) and the whole workspace into .venv
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet

demo: setup  ## the whole pipeline against the simulator for DURATION seconds (profile demo: trades visibly); last line is a JSON summary
	.venv/bin/btcbot up --profile demo --duration $(DURATION)

up: setup  ## the whole pipeline until Ctrl-C
	.venv/bin/btcbot up

test: setup  ## every test: unit, integration (real NATS/Redis/Postgres) and end-to-end
	.venv/bin/pytest -q

test-unit: setup  ## only the tests that need no server
	.venv/bin/pytest -q -m "not integration and not e2e and not chaos"

images:  ## build the five services' and the simulator's images with podman or docker (deploy/images/build.sh)
	deploy/images/build.sh

test-containers: setup  ## the container smoke test: builds the images, runs them, sees a fill booked (skips without an engine)
	.venv/bin/pytest -q -rP -m container

lint: setup  ## ruff and mypy (strict)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/*/src services/*/src sim/src cli/src examples/*/src

fmt: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

doctor: setup
	.venv/bin/btcbot doctor

bench: setup  ## benchmarks print figures against a baseline measured in the same run
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
