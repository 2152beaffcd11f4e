"""Server2's start-up self-check (server2/gpu_check.py): a GPU that is required but not usable is said
once, with what was found and the fix, shown on /ping, and not retried. This machine has no GPU: the
real torch sees none, which is exactly the fault on a SageMaker host whose driver is too old."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import torch

from server2 import gpu_check, service
from server2.config import Config
from server2.gpu_check import GpuFacts, GpuUnavailable
from server2.service import Service
from tests.server2.serving.support import Servers

OLD_HOST = GpuFacts(
    driver="470.256.02",
    driver_cuda="11.4",
    build_cuda="13.0",
    torch_version="2.14.1+cu130",
    torch_devices=0,
    onnx_providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
)


def test_message_names_driver_build_torch_onnxruntime_and_the_fix() -> None:
    with pytest.raises(GpuUnavailable) as e:
        gpu_check.check("cuda", facts=OLD_HOST)
    message = str(e.value)
    for part in (
        "DEVICE=cuda needs a GPU and none is usable",
        "NVIDIA driver 470.256.02 (supports CUDA up to 11.4)",
        "this build needs CUDA 13.0",
        "torch 2.14.1+cu130 sees 0 CUDA device(s)",
        "onnxruntime providers: CUDAExecutionProvider, CPUExecutionProvider",
        "fix: run on a host image whose NVIDIA driver supports CUDA 13.0",
        "InferenceAmiVersion",
        "DEVICE=cpu",
    ):
        assert part in message, part
    assert "\n" not in message  # one log line


def test_no_driver_at_all() -> None:
    facts = GpuFacts(None, None, "13.0", "2.14.1+cu130", 0, ("CPUExecutionProvider",))
    with pytest.raises(GpuUnavailable, match="no NVIDIA driver; this build needs CUDA 13.0"):
        gpu_check.check("cuda", facts=facts)


def test_a_usable_gpu_or_no_gpu_wanted_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_check.check("cuda", facts=GpuFacts("580.65.06", "13.0", "13.0", "2.14.1+cu130", 1, ("CPUExecutionProvider",)))
    gpu_check.check("cpu", facts=OLD_HOST)
    gpu_check.check("auto", on_sagemaker=False, facts=OLD_HOST)  # local mode: auto may fall back to the CPU


def test_auto_on_sagemaker_requires_the_gpu() -> None:
    with pytest.raises(GpuUnavailable, match="DEVICE=auto needs a GPU"):
        gpu_check.check("auto", on_sagemaker=True, facts=OLD_HOST)


def test_driver_facts_read_from_the_host(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
        "GCC version:  gcc version 10.5.0 20230707 (Red Hat 10.5.0-1) (GCC)\n"
    )
    assert gpu_check.kernel_driver(version) == "535.183.01"
    assert gpu_check.kernel_driver(tmp_path / "absent") is None
    assert gpu_check.driver_cuda("libcuda-that-is-not-there.so.1") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")
def test_the_real_facts_of_this_gpu_less_machine() -> None:
    with pytest.raises(GpuUnavailable) as e:
        gpu_check.check("cuda")
    assert f"this build needs CUDA {torch.version.cuda}" in str(e.value)
    assert "sees 0 CUDA device(s)" in str(e.value)


class CountingGuard:
    """An idle guard whose tick() counts the loading loop's rounds (it ticks once per round)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.more = threading.Event()

    def tick(self) -> bool:
        self.ticks += 1
        if self.ticks >= 5:
            self.more.set()
        return False


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")
def test_service_reports_once_and_stops_retrying(
    tmp_path: Path, test_models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import server2.models as models

    picks = []
    real_pick = models.pick_device
    monkeypatch.setattr(
        models, "pick_device", lambda requested, on_sagemaker: picks.append(requested) or real_pick(requested)
    )
    monkeypatch.setattr(service, "LOAD_RETRY_SECONDS", 0.01)
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv("SHARED_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("MODELS_DIR", str(test_models_dir))
    monkeypatch.setenv("DEVICE", "cuda")
    cfg = Config.from_env()
    guard = CountingGuard()
    svc = Service(cfg, guard)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="server2.service"):
        svc.start()
        assert guard.more.wait(60), svc.reason  # five rounds of the loop ...
    status, body = svc.health()
    svc.stopping.set()
    assert picks == ["cuda"]  # ... and the device was tried once: no retry of what cannot heal
    assert status == 503 and body["status"] == "error"
    assert "needs a GPU and none is usable" in body["reason"] and "fix:" in body["reason"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "needs a GPU" in errors[0].getMessage() and not errors[0].exc_info


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")
def test_ping_answers_503_with_the_reason(tmp_path: Path, test_models_dir: Path) -> None:
    servers = Servers(tmp_path)
    try:
        server = servers.start(SHARED_DIR=str(tmp_path / "shared"), MODELS_DIR=str(test_models_dir), DEVICE="cuda")
        deadline = time.monotonic() + 120  # the reason appears once the loading thread has imported torch
        answer = server.ping()
        while answer.json().get("status") != "error" and time.monotonic() < deadline:
            time.sleep(0.1)
            answer = server.ping()
        body = answer.json()
        assert answer.status_code == 503
        assert "needs a GPU and none is usable" in body["reason"] and "CUDA 13.0" in body["reason"]
        assert "trying again" not in body["reason"]
        assert server.log().count("needs a GPU and none is usable") == 1
        assert "Traceback" not in server.log()
    finally:
        servers.kill_all()
