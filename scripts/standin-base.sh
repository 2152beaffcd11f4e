#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm where no container registry can be reached: Debian bookworm's
# own Python 3.11, built by mmdebstrap from Debian's packages and imported under the base's name.
# It differs from the real image in where Python lives: /usr/bin/python3.11, with pip installing into
# /usr/local/lib/python3.11/dist-packages (the real one: /usr/local/bin and .../site-packages).
#   scripts/standin-base.sh podman|docker
set -euo pipefail
tool=${1:?usage: standin-base.sh podman|docker}
base=python:3.11-slim-bookworm
tar=$(mktemp --suffix=.tar)
trap 'rm -f "$tar"' EXIT
# The customize hooks make it usable as the Dockerfiles use it: pip may install into the system Python
# (no EXTERNALLY-MANAGED), `python` and `pip` are on PATH, and this machine's CA bundle is in, so pip
# reaches the package registry the way the host does.
mmdebstrap --variant=minbase --include=ca-certificates,python3,python3-pip,python3-venv,libgomp1 \
    --customize-hook='rm -f "$1/usr/lib/python3.11/EXTERNALLY-MANAGED"' \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python" && ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar"
"$tool" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tar" "docker.io/library/$base"
