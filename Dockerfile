# One image for the three services. The entrypoint is `python -m`, so the argument names the
# module to run:
#   docker build -t amends .
#   docker run -e AMENDS_HTTP_HOST=0.0.0.0 -p 127.0.0.1:8001:8001 amends services.intake
#                                   # or services.decision, services.fulfilment
#   docker run --entrypoint amends amends --help   # the operator CLI (replay, dlq, case, ...)
#
# requirements.txt pins the development tools too; it is used here only as a constraints
# file, so the image gets the runtime dependencies of pyproject.toml at the locked versions.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------------------
# build: a virtual environment with the locked runtime dependencies, then the project.
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/amends

# Dependencies first, from the project metadata alone (empty packages), so this layer is
# rebuilt only when pyproject.toml or the lock changes, not on every code change.
COPY pyproject.toml requirements.txt README.md ./
RUN mkdir amends schemas services \
    && /opt/amends/bin/pip install --constraint requirements.txt . \
    && /opt/amends/bin/pip uninstall --yes amends

# The product only: devtools/ (local stack, bench, demo, fake gateway) stays out of the image.
COPY amends ./amends
COPY schemas ./schemas
COPY services ./services
RUN /opt/amends/bin/pip install --no-deps . \
    && /opt/amends/bin/python -m compileall -q /opt/amends/lib

# ---------------------------------------------------------------------------------------
# runtime: the interpreter, the environment and the default policy; no compilers, no
# sources, a fixed non-root user (numeric, so Kubernetes can verify runAsNonRoot).
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="amends" \
      org.opencontainers.image.description="Amends services: intake, decision, fulfilment" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 amends \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin amends

COPY --from=build /opt/amends /opt/amends
COPY deploy/policy /etc/amends/policy

# The settings classes read AMENDS_*. The services listen on 127.0.0.1 unless told where:
# the chart and the compose file set AMENDS_HTTP_HOST (e.g. 0.0.0.0 behind a NetworkPolicy);
# `docker run -e AMENDS_HTTP_HOST=0.0.0.0 -p 127.0.0.1:8001:8001 amends services.intake`.
ENV PATH=/opt/amends/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AMENDS_DECISION_POLICY_PATH=/etc/amends/policy/default.yaml

WORKDIR /opt/amends
USER 10001:10001
EXPOSE 8001 8002 8003

ENTRYPOINT ["python", "-m"]
CMD ["services.intake"]
