"""Fixtures for every Server2 suite: the small test weights, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights import build_test_models


@pytest.fixture(scope="session")
def test_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with vit_l.pth, yolov8n.pt, yolov8n-seg.pt and birefnet-dis.onnx (small, random/fixed weights)."""
    return build_test_models(tmp_path_factory.mktemp("models"))
