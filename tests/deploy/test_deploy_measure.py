"""deploy/measure_startup.py's measuring half on the test suite's small weights (the full-size run
takes minutes and 4 GB: its figures are in the stack's parameter descriptions)."""

from __future__ import annotations

from pathlib import Path

from deploy.measure_startup import measure


def test_measures_the_real_loading_code_in_a_fresh_process(test_models_dir: Path) -> None:
    figures = measure(test_models_dir)
    assert set(figures) == {"import_s", "load_s", "peak_rss_mb", "rss_after_load_mb", "weights_mb"}
    # torch, ultralytics and onnxruntime alone take a few hundred MB; the peak is never below the end
    assert 100 < figures["rss_after_load_mb"] <= figures["peak_rss_mb"] < 4096
    assert figures["weights_mb"] == sum(f.stat().st_size for f in test_models_dir.iterdir()) // 2**20
