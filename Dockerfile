# The gatekeeper's image: `gatekeeper serve` for the chart, `gatekeeper step run` for the pods of
# Argo release workflows (the WorkflowTemplate runs the command `gatekeeper`, found on PATH).
#
#   docker build -t release-gatekeeper:0.1.0 .
#   buildah bud --build-arg PYTHON_IMAGE=registry.example/python:3.11-slim-bookworm -t ... .
#
# The builder stage builds the project's wheel and installs it with its extras into a virtual
# environment; the runtime stage copies only that environment onto the same base, runs no
# command of its own (no shell is needed at run time) and runs as a numeric non-root user. The
# process writes only to /tmp and to GATEKEEPER_HOME (/var/lib/gatekeeper): mount both (an
# emptyDir, or a volume for a SQLite store) and the root filesystem can be read-only.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatekeeper ./gatekeeper
COPY gates ./gates
COPY strategies ./strategies
COPY workflows ./workflows
RUN python3 -m venv /opt/gatekeeper \
    && /opt/gatekeeper/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/gatekeeper/bin/pip install "$(ls /wheels/release_gatekeeper-*.whl)[kubernetes,argo,api,postgres]" \
    && /opt/gatekeeper/bin/pip uninstall --yes pip \
    && /opt/gatekeeper/bin/python -m compileall -q /opt/gatekeeper/lib \
    && /opt/gatekeeper/bin/gatekeeper --help > /dev/null \
    && mkdir -p /var/lib/gatekeeper

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="release-gatekeeper" \
      org.opencontainers.image.description="Progressive delivery with metric gates and automatic rollback"
ENV PATH=/opt/gatekeeper/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GATEKEEPER_HOME=/var/lib/gatekeeper
COPY --from=builder /opt/gatekeeper /opt/gatekeeper
COPY --from=builder --chown=10001:10001 /var/lib/gatekeeper /var/lib/gatekeeper
USER 10001:10001
WORKDIR /var/lib/gatekeeper
EXPOSE 8080
ENTRYPOINT ["/opt/gatekeeper/bin/gatekeeper"]
CMD ["serve", "--config", "/etc/gatekeeper/config.yaml"]
