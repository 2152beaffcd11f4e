"""Helpers for the multi-worker tests: making jobs, starting worker processes, reading their logs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.wait import wait_for
from studio import layout
from studio.storage import Storage

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("job_worker.py")


def make_jobs(storage: Storage, count: int, users: tuple[str, ...] = ("alice", "bob")) -> list[tuple[str, str]]:
    jobs = [(users[i % len(users)], f"img{i:03d}") for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job: storage.write(layout.resized(*job), b"png"), jobs))
    return jobs


def start_worker(
    root: str, log_dir: Path, name: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A worker in a process of its own (python job_worker.py), with this repository importable."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(WORKER), root, str(log_dir), name, *options], env=env)


def race(
    workers: dict[str, tuple[str, dict[str, str]]], log_dir: Path, threads: int, timeout: float = 150
) -> list[int]:
    """Worker processes {name: (root, extra environment)} with `threads` workers each, started
    together behind a start line; their exit codes once all have finished."""
    go = log_dir / "go"
    procs = {
        name: start_worker(root, log_dir, name, "--threads", str(threads), "--go", str(go), env=env)
        for name, (root, env) in workers.items()
    }
    try:
        wait_for(
            lambda: all((log_dir / f"{n}.ready").exists() or p.poll() is not None for n, p in procs.items()),
            "the worker processes",
            120,
        )
        go.touch()
        return [p.wait(timeout) for p in procs.values()]
    finally:
        go.touch()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


class Events:
    """Every line the workers logged: events[kind][(user, id)] = [(worker, token), ...]."""

    def __init__(self, log_dir: Path) -> None:
        self.by_kind: dict[str, dict[tuple[str, str], list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
        for log in sorted(log_dir.glob("*.log")):
            for line in log.read_text().splitlines():
                kind, user, image_id, token = line.split()
                self.by_kind[kind][(user, image_id)].append((log.stem, token))

    def __getitem__(self, kind: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
        return self.by_kind[kind]
