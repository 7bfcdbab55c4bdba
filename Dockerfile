# syntax=docker/dockerfile:1.7
#
# One small image per service, chosen with a build argument:
#   docker build --build-arg SERVICE=risk -t btcbot-risk .
# SERVICE is one of: marketdata strategy risk execution ledger sim cli (the `btcbot` command: alert-relay).
#
# The builder installs ONLY btcbot-$SERVICE and the workspace libraries it depends on, from the committed
# uv.lock, as real (non-editable) wheels into /app/.venv; the runtime image gets that venv and nothing else
# (no sources, no uv, no build tools, no dev dependencies).

ARG SERVICE=marketdata
ARG PYTHON_IMAGE=python:3.11-slim

# uv is copied from its release image, pinned like the Makefile's UV_VERSION.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
COPY --from=uv /uv /usr/local/bin/uv
# Use the image's interpreter (the runtime stage has the same one at the same path), never a downloaded one;
# copy instead of hard-linking from the cache mount; compile bytecode now because the root fs is read-only later.
ENV UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Layer 1: third-party dependencies only. uv needs every workspace member's pyproject.toml to read the
# workspace, but not their sources, so this layer survives source edits.
COPY uv.lock pyproject.toml ./
COPY libs/contracts/pyproject.toml libs/contracts/
COPY libs/runtime/pyproject.toml libs/runtime/
COPY libs/devstack/pyproject.toml libs/devstack/
COPY libs/btcturk/pyproject.toml libs/btcturk/
COPY services/marketdata/pyproject.toml services/marketdata/
COPY services/strategy/pyproject.toml services/strategy/
COPY services/risk/pyproject.toml services/risk/
COPY services/execution/pyproject.toml services/execution/
COPY services/ledger/pyproject.toml services/ledger/
COPY sim/pyproject.toml sim/
COPY cli/pyproject.toml cli/
COPY examples/btcbot-example-strategy/pyproject.toml examples/btcbot-example-strategy/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "btcbot-${SERVICE}"

# Layer 2: the service and its workspace libraries, built as wheels (--no-editable: the venv must not point
# back into /src, which the runtime image does not have).
COPY libs libs
COPY services services
COPY sim sim
COPY cli cli
COPY examples examples
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "btcbot-${SERVICE}" \
    && /app/.venv/bin/python -c "import importlib; importlib.import_module('btcbot.${SERVICE}.__main__')"

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="btcbot-${SERVICE}" \
      org.opencontainers.image.description="BTCTurk trading system: ${SERVICE}"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 btcbot \
    && useradd --system --uid 10001 --gid btcbot --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin btcbot
COPY --from=builder --chown=root:root /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BTCBOT_HEALTH_PORT=8080
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# python-slim has no curl; urlopen raises on a 503, so the exit status is the readiness answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('BTCBOT_HEALTH_PORT', '8080')}/readyz\", timeout=2)"]

# ENTRYPOINT does not expand build arguments, so each service has its own final stage (exec form: python is
# PID 1 and gets SIGTERM directly, which starts the graceful drain), and the last stage picks one by name.
FROM runtime AS svc-marketdata
ENTRYPOINT ["python", "-m", "btcbot.marketdata"]

FROM runtime AS svc-strategy
ENTRYPOINT ["python", "-m", "btcbot.strategy"]

FROM runtime AS svc-risk
ENTRYPOINT ["python", "-m", "btcbot.risk"]

FROM runtime AS svc-execution
ENTRYPOINT ["python", "-m", "btcbot.execution"]

FROM runtime AS svc-ledger
ENTRYPOINT ["python", "-m", "btcbot.ledger"]

FROM runtime AS svc-sim
EXPOSE 8800
# The simulator has no /readyz; its own health endpoint is /sim/health on the API port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8800/sim/health', timeout=2)"]
ENTRYPOINT ["python", "-m", "btcbot.sim"]
CMD ["--host", "0.0.0.0", "--port", "8800"]

# The `btcbot` command (SERVICE=cli): in compose it runs `btcbot alert-relay` (docs/alerts.md "Routing").
FROM runtime AS svc-cli
EXPOSE 9095
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('ALERT_RELAY_PORT', '9095')}/readyz\", timeout=2)"]
ENTRYPOINT ["python", "-m", "btcbot.cli"]
CMD ["alert-relay"]

FROM svc-${SERVICE}
