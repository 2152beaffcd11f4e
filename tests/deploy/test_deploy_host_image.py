"""deploy/host_image.py: the endpoint's host image runs the CUDA Server2.Dockerfile is built for.

The table is checked against botocore's SageMaker service model (the InferenceAmiVersion enum and its
documentation of each image's driver and CUDA), the Dockerfile's CUDA against the torch and
onnxruntime the image installs (the same pins as this .venv)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import botocore
import pytest

from deploy import host_image
from tests.deploy.dockerfiles import Dockerfile


@pytest.fixture(scope="module")
def ami_documentation() -> dict[str, str]:
    """InferenceAmiVersion value -> its paragraph of botocore's documentation (tags stripped)."""
    (model,) = (Path(botocore.__file__).parent / "data" / "sagemaker").glob("*/service-2.json.gz")
    shapes = json.loads(gzip.decompress(model.read_bytes()))["shapes"]
    enum = shapes["ProductionVariantInferenceAmiVersion"]["enum"]
    doc = re.sub(r"<[^>]+>", " ", shapes["ProductionVariant"]["members"]["InferenceAmiVersion"]["documentation"])
    doc = re.sub(r"\s+", " ", doc)
    found = {}
    for name in enum:
        start = doc.index(f" {name} ")
        rest = doc[start + len(name) + 2 :]
        found[name] = rest[: min([rest.find(f" {n} ") for n in enum if rest.find(f" {n} ") > 0] or [len(rest)])]
    return found


def test_the_table_says_what_aws_documents(ami_documentation: dict[str, str]) -> None:
    assert host_image.HOST_IMAGE in ami_documentation
    for name, host in host_image.HOST_IMAGES.items():
        doc = ami_documentation[name]
        assert f"NVIDIA driver version: {host.driver}" in doc, (name, doc)
        assert f"CUDA version: {host_image.version(host.cuda)}" in doc, (name, doc)


def test_dockerfile_cuda_is_what_torch_and_onnxruntime_are_built_for() -> None:
    import torch
    from onnxruntime.capi import build_and_package_info

    cuda = host_image.dockerfile_cuda()
    assert torch.version.cuda == host_image.version(cuda)
    assert build_and_package_info.cuda_version.split(".")[0] == str(cuda[0])
    env = Dockerfile.read("Server2.Dockerfile").env()
    assert env["SERVER2_CUDA"] == host_image.version(cuda)
    assert f"/nvidia/cu{cuda[0]}/lib" in env["LD_LIBRARY_PATH"]


@pytest.mark.parametrize("instance_type", list(host_image.INSTANCES))
def test_the_chosen_host_image_runs_the_images_cuda_on_every_offered_instance(instance_type: str) -> None:
    assert host_image.fit_problems(instance_type, host_image.HOST_IMAGE) == []


def test_a_dockerfile_newer_than_the_host_image_is_caught() -> None:
    text = host_image.DOCKERFILE.read_text()
    newer = re.sub(r"^ARG CUDA_MINOR=\d+", "ARG CUDA_MINOR=9", text, flags=re.MULTILINE)
    cuda = host_image.dockerfile_cuda(newer)
    assert cuda == (host_image.dockerfile_cuda()[0], 9)
    (problem,) = host_image.fit_problems("ml.g5.xlarge", host_image.HOST_IMAGE, cuda)
    assert f"driver 580 (CUDA up to 13.0), but Server2 is built for CUDA {cuda[0]}.9" in problem


@pytest.mark.parametrize(
    ("instance_type", "image", "message"),
    [
        # No InferenceAmiVersion: the defaults of AWS's driver page.
        ("ml.g5.xlarge", None, "the default host of ml.g5 has NVIDIA driver 470 (CUDA up to 11.4)"),
        ("ml.g4dn.xlarge", None, "the default host of ml.g4dn has NVIDIA driver 470 (CUDA up to 11.4)"),
        ("ml.g6.xlarge", None, "the default host of ml.g6 has NVIDIA driver 535 (CUDA up to 12.2)"),
        ("ml.g6.xlarge", "al2-ami-sagemaker-inference-gpu-3-1", "driver 550 (CUDA up to 12.4)"),
        ("ml.g5.xlarge", "al2-ami-sagemaker-inference-gpu-2-1", "driver 535 (CUDA up to 12.2)"),
    ],
)
def test_host_images_too_old_for_cuda_13(instance_type: str, image: str | None, message: str) -> None:
    (problem,) = host_image.fit_problems(instance_type, image, (13, 0))
    assert message in problem and "built for CUDA 13.0" in problem


def test_a_dockerfile_without_the_cuda_args_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'ARG CUDA_MAJOR=<number>'"):
        host_image.dockerfile_cuda("FROM python:3.11-slim\n")
