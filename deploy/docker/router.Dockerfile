# syntax=docker/dockerfile:1
# skyroute router image: `skyroute router` (the data plane). Build from the
# repository root:
#   docker build -f deploy/docker/router.Dockerfile -t skyroute/router:dev .
# Checked by hadolint in tests/k8s/test_deploy_images.py (no Docker engine here).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, every one pinned with its hashes (requirements/, `make lock`):
# the same versions on every build, and this layer is reused while the lock is unchanged.
# router.txt holds the base install only (no control-plane packages).
COPY requirements/build.txt requirements/router.txt requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
 && python -m venv /opt/skyroute \
 && /opt/skyroute/bin/pip install --no-cache-dir --require-hashes -r requirements/router.txt
# Then skyroute itself, built by the locked build backend, without resolving anything.
COPY pyproject.toml README.md ./
COPY proto/skyroute proto/skyroute
COPY operator/skyroute operator/skyroute
COPY dataplane/skyroute dataplane/skyroute
COPY simulator/skyroute simulator/skyroute
COPY cli/skyroute cli/skyroute
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/skyroute/bin/pip install --no-cache-dir --no-deps --no-index /wheels/skyroute-*.whl

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="skyroute-router" \
      org.opencontainers.image.description="skyroute data plane: per-request LLM routing" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/skyroute/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/skyroute /opt/skyroute
RUN groupadd --gid 10001 skyroute \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin skyroute
USER 10001:10001
EXPOSE 7080 7081
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7081/healthz', timeout=1)"]
ENTRYPOINT ["skyroute"]
CMD ["router", "--grpc=0.0.0.0:7080", "--http=0.0.0.0:7081"]
