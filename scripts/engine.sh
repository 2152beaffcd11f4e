#!/usr/bin/env bash
# The container engine the project uses here: docker where a docker engine answers, else podman.
if docker info >/dev/null 2>&1; then echo docker; else echo podman; fi
