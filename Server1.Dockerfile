# syntax=docker/dockerfile:1
# Server1: the web app (login, upload, albums), the endpoint scaler and the resized/ watcher.
#   docker build -f Server1.Dockerfile -t sam-studio-server1 .
#   docker run -p 5050:5050 -v "$PWD/shared:/mnt/s3" -e APP_USER1=ann -e APP_PASS1=... sam-studio-server1
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHARED_DIR=/mnt/s3 \
    PORT=5050

# Non-root (uid 1000, with a writable home for library caches); /mnt/s3 is the default storage
# root: a bind mount there must be writable by uid 1000.
RUN groupadd --system --gid 1000 studio \
    && useradd --system --uid 1000 --gid studio --create-home --home-dir /home/studio --shell /usr/sbin/nologin studio \
    && mkdir -p /app /mnt/s3 \
    && chown studio:studio /mnt/s3

WORKDIR /app

# Requirements first: code changes do not reinstall them.
COPY requirements-server1.txt .
RUN pip install --no-cache-dir -r requirements-server1.txt

COPY studio/ studio/
COPY server1/ server1/

USER 1000:1000
ENV HOST=0.0.0.0
EXPOSE 5050
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '5050'), timeout=4)"]
# python -m server1 checks every variable (one line and exit 2 when one is bad) before gunicorn, which reads
# WEB_CONCURRENCY itself when imported and answers a bad one with a traceback; then runs gunicorn in-process.
CMD ["python", "-m", "server1"]
