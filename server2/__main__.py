"""`python -m server2` (and server2/serve): Server2 under gunicorn with server2/gunicorn.conf.py.

`python -m server2 segment ...`: the pipeline on local files (server2/cli.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError

from server2 import config
from server2.idle_guard import IdleGuard
from studio.config import or_exit
from studio.errors import ConfigError

GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn.conf.py"


def check() -> None:
    """The configuration, and the idle guard's AWS client built from it (gunicorn's settings and the
    worker's app reuse the Config)."""
    try:
        IdleGuard.of(config.load().deployment)
    except BotoCoreError as e:
        raise ConfigError(str(e)) from e


def main() -> None:
    if sys.argv[1:2] == ["segment"]:
        from server2 import cli

        sys.exit(cli.main(sys.argv[2:]))
    or_exit("server2", check)  # every variable checked, with one line and exit 2, before gunicorn starts
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = [sys.argv[0], "--config", str(GUNICORN_CONF), "server2.app:create_app()"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()  # returns only by exiting the process


if __name__ == "__main__":
    main()
