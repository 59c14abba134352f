# Relay's server image, built by docker-compose.yml. `relay serve` runs as an unprivileged user
# with its data (SQLite on the embedded default, and the server key file) in /var/lib/relay.
# The patient portal page (clients/web): its sources and the npm packages vendor.mjs vendors.
FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY clients/web/package.json clients/web/package-lock.json ./
COPY clients/web/tools ./tools
RUN npm ci --ignore-scripts && node tools/vendor.mjs
COPY clients/web/src ./src

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/relay --create-home relay \
    && chmod 0700 /var/lib/relay

COPY pyproject.toml README.md /tmp/relay-src/
COPY relay /tmp/relay-src/relay
RUN pip install /tmp/relay-src && rm -rf /tmp/relay-src
COPY --from=web /web/src /opt/relay/web/src
COPY --from=web /web/vendor /opt/relay/web/vendor

USER relay
WORKDIR /var/lib/relay
ENV RELAY_HOST=0.0.0.0 \
    RELAY_PORT=8080 \
    RELAY_DATA_DIR=/var/lib/relay \
    RELAY_WEB_ROOT=/opt/relay/web
VOLUME ["/var/lib/relay"]
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]

STOPSIGNAL SIGTERM
CMD ["relay", "serve"]
