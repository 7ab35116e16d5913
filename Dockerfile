# relay in a container: see README, "Running in Docker".
# Configuration comes only from RELAY_* variables; secrets from RELAY_*_FILE.

FROM python:3.11-slim AS build
RUN python -m venv /opt/relay
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN /opt/relay/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/relay --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0700 /var/lib/relay
COPY --from=build /opt/relay /opt/relay
ENV PATH=/opt/relay/bin:$PATH \
    RELAY_SERVER__HOST=0.0.0.0 \
    RELAY_SERVER__PORT=8080 \
    RELAY_OUTBOX__PATH=/var/lib/relay/outbox.db \
    RELAY_LOG__FORMAT=json
USER relay
WORKDIR /var/lib/relay
VOLUME ["/var/lib/relay"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['RELAY_SERVER__PORT'] + '/healthz', timeout=4)"]
# Exec form: relay is PID 1 and receives SIGTERM itself, then drains.
ENTRYPOINT ["relay"]
CMD ["serve"]
