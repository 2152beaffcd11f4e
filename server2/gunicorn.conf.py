"""gunicorn settings for Server2 (server2/serve, python -m server2).

ONE worker process: it holds the models in (GPU) memory. Its threads serve /ping while
invocations wait for their jobs; the jobs themselves run one at a time in the dispatcher.
"""

import logging
import os
import signal
from pathlib import Path

from server2.config import HTTP_THREADS
from server2.config import load as _load_config  # every module-level name here is read as a setting
from studio.config import or_exit as _or_exit

_config = _or_exit("server2", _load_config)  # the same Config the forked worker's create_app() uses: parsed once

bind = f"0.0.0.0:{_config.port}"
workers = 1
worker_class = "gthread"
threads = HTTP_THREADS
# The worker's main loop reports alive every second whatever the requests do; only a hung
# process trips this.
timeout = 120
# SIGTERM: the running job gets STOP_GRACE_SECONDS, then is released; requests drain meanwhile.
graceful_timeout = int(_config.stop_grace) + 10
chdir = str(Path(__file__).resolve().parent.parent)
loglevel = "info"
# No gunicorn control socket: nothing uses it, and two servers on one host would share its path.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """On SIGTERM stop taking work at once, before gunicorn drains the open requests."""
    service = worker.wsgi.extensions["server2"]  # type: ignore[attr-defined]  # the app create_app() made
    drain = worker.handle_exit  # type: ignore[attr-defined]

    def on_term(sig: int, frame: object) -> None:
        service.begin_stop()
        drain(sig, frame)

    signal.signal(signal.SIGTERM, on_term)
    signal.siginterrupt(signal.SIGTERM, False)


def worker_exit(server: object, worker: object) -> None:
    """Before the worker process ends: the running job is finished or released, never cut off."""
    app = getattr(worker, "wsgi", None)  # absent when the app failed to load
    service = app.extensions.get("server2") if app is not None else None
    if service is not None and service.stop():
        # The released job's thread is still inside torch: leave now, before the interpreter's
        # teardown destroys native threads under it (which aborts the process).
        logging.shutdown()
        os._exit(0)
