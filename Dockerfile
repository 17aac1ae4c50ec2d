# The igrt HTTP service: `igrt serve` under uvicorn, as a non-root user, data in a volume.
#
#   docker build -t igrt .
#   docker run -p 8000:8000 -v igrt-data:/srv/igrt/data igrt
#
# Production defaults (unlike ./scripts/serve): no demo patient, no first-run token file, the
# sign-in cookie marked Secure and HSTS on every response: the service is meant to be reached
# over TLS only, either terminated by a reverse proxy in front of it (the CMD trusts
# X-Forwarded-Proto from IGRT_FORWARDED_ALLOW_IPS) or by uvicorn itself (README, "TLS").
# Make the first token with:  docker exec <container> igrt token create --role therapist --name NAME
# (IGRT_FIRST_RUN_TOKEN=true writes one to the data volume instead; it is deleted on first use
# or after IGRT_FIRST_RUN_TOKEN_TTL_S.) Configure with IGRT_* variables (api/core/config.py), e.g.
#   -e IGRT_DATABASE_URL=postgresql://igrt@db:5432/igrt -e IGRT_TOKEN_PEPPER=...
#
# Dependencies are installed from requirements.lock (exact versions, SHA-256 hashes; see the
# README, "Dependencies") and igrt itself without resolving anything further.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY igrt ./igrt
COPY registration ./registration
COPY api ./api
COPY fixtures ./fixtures
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 igrt \
 && useradd --system --uid 10001 --gid igrt --home-dir /srv/igrt --create-home igrt \
 && install -d -o igrt -g igrt -m 0700 /srv/igrt/data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    IGRT_DATA_DIR=/srv/igrt/data \
    IGRT_DEMO_DATA=false \
    IGRT_DEMO_REGISTRATION=false \
    IGRT_FIRST_RUN_TOKEN=false \
    IGRT_COOKIE_SECURE=true \
    IGRT_HSTS=true \
    IGRT_FORWARDED_ALLOW_IPS=127.0.0.1
USER igrt:igrt
WORKDIR /srv/igrt
VOLUME ["/srv/igrt/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
# Plain HTTP inside the container network, for the TLS proxy in front of it; to terminate TLS
# here instead, add --ssl-certfile/--ssl-keyfile with files mounted read-only.
CMD ["sh", "-c", "exec igrt serve --host 0.0.0.0 --port 8000 --forwarded-allow-ips \"$IGRT_FORWARDED_ALLOW_IPS\""]
