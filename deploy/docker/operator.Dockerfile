# syntax=docker/dockerfile:1
# skyroute operator image: `skyroute operator` (kopf watches, admission webhook,
# gRPC snapshot distribution). Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t skyroute/operator:dev .
# Checked by hadolint in tests/k8s/test_deploy_images.py (no Docker engine here).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, every one pinned with its hashes (requirements/, `make lock`):
# the same versions on every build, and this layer is reused while the lock is unchanged.
# operator.txt holds the base install and the [operator] extra.
COPY requirements/build.txt requirements/operator.txt requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements/build.txt \
 && python -m venv /opt/skyroute \
 && /opt/skyroute/bin/pip install --no-cache-dir --require-hashes -r requirements/operator.txt
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
LABEL org.opencontainers.image.title="skyroute-operator" \
      org.opencontainers.image.description="skyroute control plane as a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/skyroute/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/skyroute /opt/skyroute
RUN groupadd --gid 10001 skyroute \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin skyroute
USER 10001:10001
EXPOSE 7070 7071 9443
ENTRYPOINT ["skyroute"]
CMD ["operator", "--listen=0.0.0.0:7070", "--admin=0.0.0.0:7071"]
