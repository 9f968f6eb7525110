# One image for every service: `nocode serve NAME` picks the service (gateway, model,
# target, core, notice, mypage_cqrs, console, simulators); `nocode migrate` migrates.
#   docker build -t nocode .                  # the services' image (last stage)
#   docker build --target siege -t nocode-siege .   # the load generator (siege + the token CLI)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the platform and its pinned dependencies ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
# Every dependency is pinned there (==); wheels only, so no compiler is needed. The
# `local` extra (the embedded broker and PostgreSQL of `nocode up`, ~80 MB) is left out.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --no-cache-dir --only-binary=:all: -r requirements.txt
# Then the platform itself (not editable: migrations ship as package data).
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && pip uninstall --yes pip setuptools

# --- runtime: slim, non-root, read-only friendly ------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVICE_HOST=0.0.0.0
RUN groupadd --system --gid 10001 nocode \
    && useradd --system --uid 10001 --gid nocode --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nocode
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0555 deploy/docker/healthcheck.py /usr/local/bin/nocode-healthcheck
# core's job artefacts and log (a volume in compose, a PVC in k8s), writable by the user.
RUN mkdir /data && chown 10001:10001 /data
WORKDIR /tmp
USER 10001:10001
# gateway 8080, model 8082, notice 8083, core 8084, target 8085, mypage_cqrs 8086,
# console 8087, simulators 8090 (nocode.services)
EXPOSE 8080 8082 8083 8084 8085 8086 8087 8090
# /health/ready of the service this container runs (found from PID 1's `serve NAME`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["nocode-healthcheck"]
ENTRYPOINT ["nocode"]
CMD ["serve", "gateway"]

# --- siege: the seed's load test, with a token from `nocode token` ------------------
FROM runtime AS siege
USER 0
RUN apt-get update \
    && apt-get install --yes --no-install-recommends siege=4.0.7-1+b1 \
    && rm -rf /var/lib/apt/lists/*
COPY --chmod=0555 deploy/siege/loadtest.sh /usr/local/bin/nocode-loadtest
# siege reads and writes its rc file and log under HOME: /tmp is the writable place.
ENV HOME=/tmp SIEGERC=/etc/siege/siegerc
USER 10001:10001
ENTRYPOINT []
CMD ["nocode-loadtest"]

# The default target is the services' image.
FROM runtime
