"""Server1 as its image runs it: `python -m server1` (or gunicorn) on a free port of 127.0.0.1, and a
logged-in client of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from harness import REPO
from harness.wait import answers, free_port, wait_for
from studio.storage import Storage, open_storage

USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', html
    )
    assert match, "page carries no CSRF token"
    return match.group(1)


class Server:
    """One Server1 process logging to a file; alice and bob (USERS) may log in."""

    def __init__(self, shared: str, gunicorn: bool = False, **env: str) -> None:
        self.shared = shared
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SHARED_DIR": shared,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "APP_USER1": "alice",
            "APP_PASS1": USERS["alice"],
            "APP_USER2": "bob",
            "APP_PASS2": USERS["bob"],
            "SKIP_MODEL_DOWNLOAD": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        for name in ("SAGEMAKER_ENDPOINT", "INFERENCE_URL", "SECRET_KEY"):
            if name not in env:
                self.env.pop(name, None)
        if gunicorn:
            exe = str(Path(sys.executable).parent / "gunicorn")
            self.args = [
                exe,
                "-c",
                "server1/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
                "server1:create_app()",
            ]
        else:
            self.args = [sys.executable, "-m", "server1"]
        self.proc: subprocess.Popen | None = None
        self.log = Path(shared if "://" not in shared else "/tmp") / f".server1-{self.port}.log"

    @property
    def storage(self) -> Storage:
        return open_storage(self.shared)

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - kept open while the process runs
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            answer = answers(self.url + "/healthz")
            return answer is not None and answer.status_code == 200

        try:
            wait_for(healthy, "server1 to answer /healthz", 60, self.proc, interval=0.1)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise RuntimeError(f"server1 did not start:\n{self.output()}") from None
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()

    def threads(self) -> int:
        """Threads of the serving process (gunicorn: of its worker)."""
        assert self.proc is not None
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:  # gunicorn: the (single) worker serves
            pid = int(children[0])
        return len(os.listdir(f"/proc/{pid}/task"))

    def login(self, user: str, password: str | None = None) -> requests.Session:
        """A logged-in client; its .csrf is the token to send with state-changing requests."""
        session = requests.Session()
        token = csrf_of(session.get(self.url + "/login", timeout=10).text)
        answer = session.post(
            self.url + "/login",
            data={"username": user, "password": password or USERS[user], "csrf_token": token},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.url.rstrip("/") == self.url, answer.text[:300]
        session.csrf = csrf_of(answer.text)  # type: ignore[attr-defined]
        session.headers["X-CSRFToken"] = session.csrf  # type: ignore[attr-defined]
        return session
