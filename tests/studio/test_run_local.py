"""`make run` (scripts/run_local.py): the environment both servers get in local mode."""

from __future__ import annotations

from scripts.run_local import local_env


def test_cpu_local_mode_loads_mobile_sam_unless_sam_model_says() -> None:
    env = local_env({"DEVICE": "cpu", "SAGEMAKER_ENDPOINT": "sam"})
    assert env["SAM_MODEL"] == "mobile_sam" and "SAGEMAKER_ENDPOINT" not in env
    assert local_env({"DEVICE": "cpu", "SAM_MODEL": "vit_b"})["SAM_MODEL"] == "vit_b"
