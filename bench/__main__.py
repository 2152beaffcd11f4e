"""`python -m bench [figure ...]`: run the figures (all by default), print one table, and write
bench/results/latest.json. BENCH_QUICK=1 runs a small, fast version (the harness test) and writes
bench/results/quick.json."""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import QUICK, Row, stop_servers

FIGURES = ("ingest", "albums", "idle", "gpu_minutes", "pipeline", "footprint")
# The quick mode writes elsewhere, so the harness test never replaces the figures the README quotes.
RESULTS = Path(__file__).resolve().parent / "results" / ("quick.json" if QUICK else "latest.json")


def machine() -> dict:
    import torch

    cpu = ""
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rows: list[Row]) -> str:
    header = ("figure", "measure", "median", "baseline", "ratio", "target", "met", "note")
    lines = [
        (
            r.figure,
            r.measure,
            f"{_number(r.value)} {r.unit}".strip(),
            f"{_number(r.baseline)} {r.unit}" if r.baseline is not None else "-",
            f"{r.ratio:.1f}x" if r.ratio is not None else "-",
            r.target or "-",
            {True: "yes", False: "NO", None: "-"}[r.met],
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    out = []
    for i, line in enumerate([header, *lines]):
        out.append("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    names = argv or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figure(s): {', '.join(unknown)}; choose from {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)  # the code under test logs its routine warnings
    started, load_before = time.monotonic(), os.getloadavg()
    rows: list[Row] = []
    failed: list[str] = []
    try:
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            begin = time.monotonic()
            try:
                rows += importlib.import_module(f"bench.{name}").run()
            except Exception:
                traceback.print_exc()
                failed.append(name)
            print(f"bench: {name} took {time.monotonic() - begin:.0f} s", file=sys.stderr, flush=True)
    finally:
        stop_servers()
    info = machine()
    load_after = os.getloadavg()
    duration = time.monotonic() - started
    print(
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, Python {info['python']}, "
        f"GPU: {info['cuda'] or 'none'}{'  [BENCH_QUICK: small inputs, not the figures]' if QUICK else ''}"
    )
    print(
        f"load average (1/5/15 min): before {', '.join(f'{x:.1f}' for x in load_before)}; "
        f"after {', '.join(f'{x:.1f}' for x in load_after)}; took {duration:.0f} s"
    )
    print(table(rows))
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the errors above)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "quick": QUICK,
                "figures": names,
                "failed": failed,
                "machine": info,
                "load_before": load_before,
                "load_after": load_after,
                "duration_s": round(duration, 1),
                "rows": [r.to_json() for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
