# pushgw: a drop-in replacement for the Prometheus Pushgateway.
#
#   docker build -t pushgw .
#   docker run -d -p 9091:9091 -v pushgw-data:/data pushgw
#   docker run -d -p 9091:9091 pushgw --web.enable-admin-api   # official flags, as with prom/pushgateway
#
# Metrics are persisted to /data/pushgw.db (the VOLUME) by default; that
# default comes from /etc/pushgw/config.yaml (deploy/docker/config.yaml), so
# flags given to `docker run` add to it instead of replacing it, and win over
# it: `--persistence.file=` keeps metrics in memory only.
# If you move the listen address or set a route prefix, tell the health check:
#   -e PUSHGW_HEALTHCHECK_URL=http://127.0.0.1:PORT/PREFIX/-/healthy
#
# No Docker engine runs on the project's machines: tests/test_deploy.py reads
# this file and replays the build stage (the COPY lines and the one RUN line,
# deploy/docker/install.sh) and the final stage's ENV, ENTRYPOINT and
# HEALTHCHECK outside Docker, with a temporary directory in place of /.
# Keep the build stage to COPY, WORKDIR and that single RUN line.

# ---- build stage: wheel + virtual environment in /opt/pushgw -----------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README* ./
COPY pushgw/ ./pushgw/
COPY deploy/docker/install.sh ./deploy/docker/install.sh
RUN sh deploy/docker/install.sh /src /opt/pushgw

# ---- final stage: the venv only, no build tools, non-root ---------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="pushgw" \
      org.opencontainers.image.description="A drop-in replacement for the Prometheus Pushgateway" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/pushgw/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PUSHGW_HEALTHCHECK_URL=http://127.0.0.1:9091/-/healthy
# Same path as in the build stage: a venv is not relocatable.
COPY --from=build /opt/pushgw /opt/pushgw
COPY deploy/docker/config.yaml /etc/pushgw/config.yaml
# uid/gid 65534 ("nobody") owns /data, so a fresh named volume is writable.
RUN mkdir -p /data && chown 65534:65534 /data && chmod 0750 /data
USER 65534:65534
WORKDIR /data
VOLUME /data
EXPOSE 9091
# No curl in slim images: the venv's Python fetches /-/healthy; any error or a
# non-2xx status raises, and the exit code 1 marks the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['PUSHGW_HEALTHCHECK_URL'], timeout=4).close()"]
ENTRYPOINT ["pushgw", "--config.file=/etc/pushgw/config.yaml"]
CMD []
