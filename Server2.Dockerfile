# syntax=docker/dockerfile:1
# Server2: the SageMaker inference container (GET /ping, POST /invocations on 8080, `serve`).
#   docker build -f Server2.Dockerfile -t sam-studio-server2 .
#   docker build -f Server2.Dockerfile --build-arg BAKE_WEIGHTS=1 -t sam-studio-server2 .
#       (bakes the weights found in deploy/weights/ into the image: faster cold starts)
#   docker run --gpus all -p 8080:8080 -v "$PWD/shared:/mnt/s3" sam-studio-server2 serve
#
# CUDA comes from PyPI, not from a CUDA base image: torch 2.14.1's nvidia-* wheels carry the
# CUDA 13 runtime, cuBLAS, cuFFT, cuRAND and cuDNN 9 that onnxruntime-gpu 1.31.1 (built for
# CUDA 13 + cuDNN 9) also needs. LD_LIBRARY_PATH points the loader at those wheel folders
# (server2/models.py also calls onnxruntime.preload_dlls()). The host supplies only the driver
# (libcuda.so.1), which the NVIDIA container runtime mounts on SageMaker's GPU instances: a driver
# new enough for CUDA 13 (580+) comes only with the host image deploy/host_image.py chooses.
FROM python:3.11-slim-bookworm

# The CUDA this image is built for: torch 2.14.1's default PyPI wheels (cu130) and onnxruntime-gpu's
# CUDA 13 build. The one place it is written; deploy/host_image.py reads it to choose the host image
# (InferenceAmiVersion) whose NVIDIA driver runs it, and a test fails when the two disagree.
ARG CUDA_MAJOR=13
ARG CUDA_MINOR=0

# Empty: weights stay in shared storage (MODELS_DIR defaults to $SHARED_DIR/models).
# 1: copy deploy/weights/* into /opt/models and use them (not /opt/ml/model: SageMaker mounts
# model artifacts there when a model has any), MobileSAM's exported encoder and decoder among them, which
# Server2 then copies to the shared models/ instead of exporting them.
ARG BAKE_WEIGHTS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/program \
    SHARED_DIR=/mnt/s3 \
    NUMBA_CACHE_DIR=/opt/numba-cache \
    MODELS_DIR=${BAKE_WEIGHTS:+/opt/models} \
    DEVICE=auto \
    SERVER2_CUDA=${CUDA_MAJOR}.${CUDA_MINOR} \
    LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cu${CUDA_MAJOR}/lib:/usr/local/lib/python3.11/site-packages/nvidia/cudnn/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --system --gid 1000 studio \
    && useradd --system --uid 1000 --gid studio --create-home --home-dir /home/studio --shell /usr/sbin/nologin studio \
    && mkdir -p /opt/program /opt/models /mnt/s3 \
    && chown studio:studio /mnt/s3

WORKDIR /opt/program

# Requirements first (slow, rarely changed), then weights, then code (fast, often changed).
COPY requirements-server2.txt requirements-server2-nodeps.txt ./
# pymatting's numba code (rembg imports it with the matte model's session) is compiled here, once, into
# NUMBA_CACHE_DIR: numba reads its cache only from a folder it can also write, hence uid 1000 owns it
# (else the first matte model's load would compile for a minute).
RUN pip install --no-cache-dir -r requirements-server2.txt \
    && pip install --no-cache-dir --no-deps -r requirements-server2-nodeps.txt \
    && python -c "import pymatting" && chown -R 1000:1000 "$NUMBA_CACHE_DIR"

RUN --mount=type=bind,source=deploy/weights,target=/mnt/weights \
    case "$BAKE_WEIGHTS" in \
      "") ;; \
      1) for f in vit_l.pth birefnet-dis.onnx yolov8n.pt yolov8n-seg.pt mobile_sam.pt; do \
           test -s "/mnt/weights/$f" || { echo "BAKE_WEIGHTS=1 needs deploy/weights/$f" >&2; exit 1; }; \
         done \
         && for f in /mnt/weights/sam-encoder-*.onnx /mnt/weights/sam-decoder-*.onnx; do \
           test -s "$f" || { echo "BAKE_WEIGHTS=1 needs MobileSAM's exported $f (deploy.deploy --bake-weights)" >&2; exit 1; }; \
         done \
         && cp /mnt/weights/*.pth /mnt/weights/*.pt /mnt/weights/*.onnx /opt/models/ ;; \
      *) echo "BAKE_WEIGHTS must be 1 or empty, got '$BAKE_WEIGHTS'" >&2; exit 1 ;; \
    esac

COPY studio/ studio/
COPY server2/ server2/
# SageMaker starts the container as `docker run <image> serve`: `serve` must be on PATH.
RUN chmod 0755 server2/serve && ln -s /opt/program/server2/serve /usr/local/bin/serve

USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080'), timeout=4)"]
CMD ["serve"]
