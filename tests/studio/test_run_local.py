"""`make run` (scripts/run_local.py): the environment both servers get in local mode."""

from __future__ import annotations

from scripts.run_local import local_env


def test_local_mode_leaves_the_sam_model_to_server2() -> None:
    """The CPU rule is Server2's own (server2.models.choose): `make run` sets no SAM_MODEL for it."""
    env = local_env({"DEVICE": "cpu", "SAGEMAKER_ENDPOINT": "sam"})
    assert "SAM_MODEL" not in env and "SAGEMAKER_ENDPOINT" not in env
    assert local_env({"DEVICE": "cpu", "SAM_MODEL": "vit_b"})["SAM_MODEL"] == "vit_b"
