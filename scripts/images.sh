#!/usr/bin/env bash
# `make images`: both images, built with docker where a docker engine answers, else podman. When the base
# image is neither here nor pullable (no registry reachable), the stand-in base is made first
# (scripts/standin-base.sh). Layers are cached: a re-run rebuilds only what changed.
#   scripts/images.sh                 # sam-studio-server1, sam-studio-server2
#   ENGINE=podman scripts/images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-$(scripts/engine.sh)}
base=$(sed -n 's/^FROM //p' Server1.Dockerfile)
if ! "$engine" image inspect "$base" >/dev/null 2>&1; then
    "$engine" pull "$base" || scripts/standin-base.sh "$engine"
fi
flags=()
# podman: the Docker image format keeps HEALTHCHECK (OCI's drops it); runc, as Debian bookworm's crun
# refuses this kind of host's hybrid cgroups (docker uses runc already).
[[ $engine == podman ]] && flags=(--format docker --runtime runc)
for server in server1 server2; do
    echo "== sam-studio-$server"
    "$engine" build "${flags[@]}" -f "${server^}.Dockerfile" -t "sam-studio-$server" .
done
