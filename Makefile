# Two commands: `make run` (both servers, local mode) and `make test` (the whole suite).
# Everything installs into one .venv at the repo root, created on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements-server1.txt requirements-server2.txt requirements-server2-nodeps.txt requirements-dev.txt

.PHONY: run test lint bench bench-quality soak venv system-packages images clean

# Server1's onnxruntime and Server2's onnxruntime-gpu both install the module `onnxruntime`; in this one
# venv the GPU build (which runs on the CPU too) is put back last so its files are the ones left whole.
ORT_GPU = $(shell grep '^onnxruntime-gpu==' requirements-server2.txt)

# ultralytics goes in without its dependencies (listed in requirements-server2.txt): it asks
# for opencv-python, which would fight opencv-python-headless over cv2.
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-server1.txt -r requirements-server2.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-server2-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --force-reinstall $(ORT_GPU)
	$(PY) -c "import onnxruntime; onnxruntime.InferenceSession"
	touch $@

venv: $(STAMP)

# ESLint for server1/static/js, as package.json and package-lock.json pin it (npm ci: exactly the lock).
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# From Debian: Chromium for the browser tests (Playwright drives it; no browser download), s3fs,
# rclone and fuse3 for the tests on real FUSE mounts of a bucket (tests/fuse), Node.js with npm for ESLint,
# and podman, buildah, runc, mmdebstrap and podman-compose to build and run the images
# (tests/deploy/test_deploy_containers.py).
# Each command with the Debian package that brings it; only the missing ones are installed (a machine
# whose Node.js comes from NodeSource already has npm, and Debian's npm would conflict with it).
SYSTEM_PACKAGES := chromium:chromium s3fs:s3fs rclone:rclone fusermount3:fuse3 npm:npm podman:podman \
	buildah:buildah runc:runc mmdebstrap:mmdebstrap podman-compose:podman-compose
system-packages:
	@missing=$$(for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	if [ -n "$$missing" ]; then apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; fi

# Both images: docker where a docker engine answers, else podman; the stand-in base first where
# python:3.11-slim-bookworm cannot be pulled (scripts/images.sh).
images: system-packages
	scripts/images.sh

run: venv
	$(PY) -m scripts.run_local

# Ruff (lint and format), mypy over studio/, server1/ and server2/ (pyproject.toml), ESLint over server1/static/js.
lint: venv $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	node_modules/.bin/eslint server1/static/js

# Three pytest-xdist workers on 2 cores: most tests wait on servers, mounts and browsers, not the CPU.
# worksteal rebalances when a worker is left with long tests (which conftest.py orders first).
TEST_WORKERS ?= 3
test: venv system-packages lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: venv
	$(PY) -m bench

# Cut-out quality on labelled photos (bench/quality.py), then soft edges on composites with a known alpha
# (bench/edges.py); models by DETECT_MODEL / MATTE_MODEL / SAM_MODEL,
# by default the real weights in ../shared/realworld/weights: YOLO11n, MobileSAM, U2-Netp.
PHOTOS ?= ../shared/realworld/photos
WEIGHTS ?= ../shared/realworld/weights
bench-quality: venv
	DETECT_MODEL=$${DETECT_MODEL:-yolo11n.pt} MATTE_MODEL=$${MATTE_MODEL:-u2netp} SAM_MODEL=$${SAM_MODEL:-mobile_sam} \
	$(PY) -m bench.quality --photos $(PHOTOS) --weights $(WEIGHTS)
	DETECT_MODEL=$${DETECT_MODEL:-yolo11n.pt} MATTE_MODEL=$${MATTE_MODEL:-u2netp} SAM_MODEL=$${SAM_MODEL:-mobile_sam} \
	$(PY) -m bench.edges --photos $(PHOTOS) --weights $(WEIGHTS)

# A day of two users with faults (bench/soak.py): real servers, weights, S3 (moto) and an s3fs mount;
# about 15-25 minutes on 2 cores. Figures in bench/results/soak.json; exit 1 when anything was lost.
# SEED=N replays a run (its seed is printed first).
soak: venv system-packages
	$(PY) -m bench.soak $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache node_modules
