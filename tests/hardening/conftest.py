"""Fixtures of the hardening suite and the summary table printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.server1 import Server
from tests.hardening.support import TALLY

# The lifecycle suite's fault-injecting proxy in front of moto's SageMaker API, reused as is.
from tests.lifecycle.conftest import fault_proxy, make_endpoint, sagemaker  # noqa: F401


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.areas:
        return
    terminalreporter.section("hardening: attacks tried / held / failed")
    for line in TALLY.lines():
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _own_tally() -> None:
    """Each test asserts on its own cases only, whatever ran before it."""
    TALLY.begin()


@pytest.fixture(scope="module")
def server1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real Server1 (gunicorn, as deployed) on a temporary folder, users alice and bob."""
    shared = tmp_path_factory.mktemp("hardening-s1") / "shared"
    server = Server(str(shared), gunicorn=True, EVENTS_POLL_SECONDS="0.3").start()
    yield server
    server.stop()
