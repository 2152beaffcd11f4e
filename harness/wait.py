"""Waiting for a condition, never for a time; and the local ports the servers listen on."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import requests


def wait_for(
    condition: Callable[[], object],
    what: str,
    timeout: float = 60.0,
    proc: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> float:
    """Poll condition until it holds; the seconds that took. timeout only bounds a wait that would otherwise
    hang; proc: a process the condition needs, whose exit ends the wait at once."""
    started = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def answers(url: str, timeout: float = 5) -> requests.Response | None:
    """url's answer, or None while nothing listens there (or, under gunicorn, its worker still boots)."""
    try:
        return requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Until url answers at all (any status)."""
    wait_for(lambda: answers(url, timeout=1) is not None, url, timeout, proc, interval=0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
