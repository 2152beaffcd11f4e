"""`python -m server1` (the image's command): Server1 served by gunicorn on HOST:PORT (default 127.0.0.1:5050).

Settings: server1/gunicorn.conf.py. On SIGTERM event streams end, the lifecycle's threads stop and the
scheduler lease is released, and the process exits within a few seconds (docs/architecture.md, "Start and stop").
"""

from __future__ import annotations

import sys
from pathlib import Path

from server1.config import load
from studio import config

CONFIG_FILE = Path(__file__).with_name("gunicorn.conf.py")


def main() -> int:
    host = config.env_str("HOST") or "127.0.0.1"
    port = config.or_exit("server1", load).port  # gunicorn's settings and the worker's app reuse this Config
    # Imported after the check: gunicorn reads WEB_CONCURRENCY itself on import, with a traceback when bad.
    from gunicorn.app.wsgiapp import WSGIApplication

    print(f"server1: listening on http://{host}:{port}", flush=True)
    sys.argv = [sys.argv[0], "-c", str(CONFIG_FILE), "--bind", f"{host}:{port}", "server1:create_app()"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="server1").run()  # exits with gunicorn's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
