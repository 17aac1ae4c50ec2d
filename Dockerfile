# The igrt HTTP service: `igrt serve` under uvicorn, as a non-root user, data in a volume.
#
#   docker build -t igrt .
#   docker run -p 8000:8000 -v igrt-data:/srv/igrt/data igrt
#
# Embedded defaults: SQLite and the file store in /srv/igrt/data, a demo patient and a
# first-run therapist token in /srv/igrt/data/first-run-token.txt on the first start.
# Configure with IGRT_* variables (api/core/config.py), e.g.
#   -e IGRT_DATABASE_URL=postgresql://igrt@db:5432/igrt -e IGRT_TOKEN_PEPPER=... -e IGRT_DEMO_DATA=false
# Tokens: docker exec <container> igrt token create --role console --name linac-3

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY igrt ./igrt
COPY registration ./registration
COPY api ./api
COPY fixtures ./fixtures
# The runtime dependencies come from pyproject.toml; the postgres extra adds the driver and
# the redis extra the client replicas share the live monitor with (compose.yaml).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install ".[postgres,redis]"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 igrt \
 && useradd --system --uid 10001 --gid igrt --home-dir /srv/igrt --create-home igrt \
 && install -d -o igrt -g igrt -m 0700 /srv/igrt/data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    IGRT_DATA_DIR=/srv/igrt/data
USER igrt:igrt
WORKDIR /srv/igrt
VOLUME ["/srv/igrt/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["igrt", "serve", "--host", "0.0.0.0", "--port", "8000"]
