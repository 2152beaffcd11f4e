"""Server2 as its image runs it (server2/serve, or python -m server2 under gunicorn) on 127.0.0.1; killed
whole (gunicorn master and worker) with SIGKILL when a test or the soak wants nothing to clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests

from harness import REPO
from harness.wait import answers, free_port, wait_for


def process_log(folder: Path, port: int) -> Path:
    """A new, empty log file for one server process on port. Unique even when a restarted server is given
    the port its killed predecessor freed: a file named by the port alone was then both processes' log,
    truncated by the second and its "done" lines read twice. Its name is the process's worker id."""
    fd, name = tempfile.mkstemp(prefix=f"server2-{port}-", suffix=".log", dir=folder)
    os.close(fd)
    return Path(name)


class Server2:
    """One server process; its output goes to a log file the tests read."""

    def __init__(self, folder: Path, env: dict[str, str], module: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = process_log(folder, self.port)
        self.worker_id = self.log_path.stem
        command = [sys.executable, "-m", "server2"] if module else [sys.executable, str(REPO / "server2" / "serve")]
        full_env = {
            **os.environ,
            "DEVICE": "cpu",
            "POLL_SECONDS": "0.2",
            "OMP_NUM_THREADS": "1",  # the machine's few cores are shared
            "PYTHONUNBUFFERED": "1",
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port}",
            "WORKER_ID": self.worker_id,
            **env,
        }
        with open(self.log_path, "wb") as log:
            # serve runs from any folder; python -m needs the repository on its path.
            self.proc = subprocess.Popen(
                command, env=full_env, cwd=REPO if module else folder, stdout=log, stderr=subprocess.STDOUT
            )
        # Until /ping answers at all (503 while loading is fine); the worker may take seconds to boot.
        self._wait(lambda: answers(self.url + "/ping") is not None, "/ping to answer", 60)

    def _wait(self, condition: Callable[[], object], what: str, timeout: float) -> None:
        try:
            wait_for(condition, what, timeout, self.proc, interval=0.1)
        except TimeoutError as e:
            raise TimeoutError(f"{self.url}: {e}:\n{self.log()}") from None
        except RuntimeError as e:  # the server exited
            raise AssertionError(f"{self.url}: {e}:\n{self.log()}") from None

    def ping(self) -> requests.Response:
        return requests.get(self.url + "/ping", timeout=5)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /ping is 200: the models loaded. A worker busy loading on a loaded machine may answer late."""

        def ready() -> bool:
            answer = answers(self.url + "/ping")
            return answer is not None and answer.status_code == 200

        self._wait(ready, "/ping 200", timeout)

    def invoke(self, body: object, timeout: float = 70) -> requests.Response:
        data = body if isinstance(body, bytes) else None
        return requests.post(self.url + "/invocations", json=None if data else body, data=data, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def kill_hard(server: Server2) -> None:
    """SIGKILL the worker (mid-job) and the master: nothing gets to clean up."""
    for pid in children(server.proc.pid):
        os.kill(pid, signal.SIGKILL)
    server.proc.kill()
    server.proc.wait(10)
