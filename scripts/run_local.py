"""`make run`: Server1 (5050) and Server2 (8080) together in local mode on ./shared.

No AWS: no SAGEMAKER_ENDPOINT, so Server1 does no scaling and Server2's poller takes the
jobs. Without APP_USER1/APP_PASS1 a login is generated once (random, never a default)
and kept in the shared folder, so it stays the same across runs. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from studio import layout
from studio.errors import ConfigError
from studio.storage import NotFound, open_storage

REPO = Path(__file__).resolve().parent.parent


def local_login(env: dict[str, str]) -> tuple[str, str, bool]:
    """(user, password, generated) — APP_USER1/APP_PASS1, else a generated pair kept in storage."""
    if env.get("APP_USER1") and env.get("APP_PASS1"):
        return env["APP_USER1"], env["APP_PASS1"], False
    storage = open_storage(env["SHARED_DIR"])
    key = layout.system("local-login.json")
    try:
        saved = storage.read_json(key)
        return saved["user"], saved["password"], True
    except (NotFound, ValueError, KeyError):
        login = {"user": "studio", "password": secrets.token_urlsafe(12)}
        storage.write_json(key, login)
        return login["user"], login["password"], True


def local_env(environ: dict[str, str]) -> dict[str, str]:
    """Both servers' environment in local mode: ./shared, port 5050, no endpoint. The SAM model is Server2's
    own choice (server2.models.choose: MobileSAM without a GPU unless SAM_MODEL says otherwise)."""
    env = dict(environ)
    env.setdefault("SHARED_DIR", str(REPO / "shared"))
    env.setdefault("PORT", "5050")
    env.pop("SAGEMAKER_ENDPOINT", None)  # local mode
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main() -> int:
    env = local_env(dict(os.environ))
    try:
        user, password, generated = local_login(env)
    except ConfigError as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 2
    env["APP_USER1"], env["APP_PASS1"] = user, password

    procs = [
        subprocess.Popen([sys.executable, "-m", "server2"], env=env, cwd=REPO),
        subprocess.Popen([sys.executable, "-m", "server1"], env=env, cwd=REPO),
    ]
    print(
        f"\n  SAM Studio (local mode) on {env['SHARED_DIR']}\n"
        f"  Open http://127.0.0.1:{env['PORT']} and log in as {user!r} with password {password!r}"
        + (" (generated; set APP_USER1/APP_PASS1 to choose your own)" if generated else "")
        + "\n  Server2 answers on http://127.0.0.1:8080/ping. Ctrl-C stops both.\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 0 if stopping and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
