"""gunicorn settings for Server1: gunicorn -c server1/gunicorn.conf.py "server1:create_app()".

Threaded workers (gthread): server-sent event streams each hold a thread, so there are
many threads. One worker by default: the login throttle, the live-session cache and the
event pollers live in the worker's memory (more workers work, each with its own).
"""

from __future__ import annotations

import ctypes
import signal
import threading

from server1.config import load as _load_config
from studio.config import or_exit as _or_exit  # every module-level name here is read as a setting

_config = _or_exit("server1", _load_config)  # the same Config the forked worker's create_app() uses: parsed once

# Image buffers of 1 MiB and more are mmap'ed and given back when freed. With glibc's default (a threshold
# that rises to 32 MiB after the first large free) a 12-MP upload's buffers stay in the heap of one of the
# many threads' arenas: the soak (bench/soak.py) saw Server1 grow by ~350 MB. Set here, in the master,
# before the worker is forked: it inherits it.
ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD

bind = f"0.0.0.0:{_config.port}"
worker_class = "gthread"
workers = _config.workers
threads = _config.threads
timeout = 120
graceful_timeout = 20  # open event streams end at shutdown; browsers reconnect
keepalive = 5
control_socket_disable = True  # no shared control socket under $HOME between deployments/tests
accesslog = "-"
errorlog = "-"
# Uploads up to MAX_UPLOAD_MB arrive as one request; no request-line or header games.
limit_request_line = 8190


def on_starting(server: object) -> None:
    """Refuse to start with a clear message (bad SHARED_DIR...) instead of workers that die while booting."""
    from studio.storage import open_storage

    _or_exit("server1", lambda: open_storage(_config.shared_dir))


def post_worker_init(worker: object) -> None:
    """The worker has built the app (create_app starts nothing): start its background work here.
    SIGTERM (ECS stopping the task, Ctrl-C of `make run`, a deploy): besides gunicorn's own
    graceful stop, end the open event streams at once (else each holds the worker until
    graceful_timeout); browsers reconnect to the next Server1 by themselves."""
    from server1.app import start_background

    start_background(worker.wsgi)  # type: ignore[attr-defined]
    graceful_exit = worker.handle_exit  # type: ignore[attr-defined]

    def handle_exit(sig: int, frame: object) -> None:
        graceful_exit(sig, frame)
        # Not in the signal handler itself: the hub takes a lock a request thread may hold.
        threading.Thread(target=_stop_events, args=(worker,), name="events-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handle_exit)


def worker_exit(server: object, worker: object) -> None:
    """The worker is leaving: server1.app.stop_background."""
    from server1.app import stop_background

    if getattr(worker, "wsgi", None) is not None:  # None: it failed before the app was built
        stop_background(worker.wsgi)  # type: ignore[attr-defined]


def _stop_events(worker: object) -> None:
    worker.wsgi.extensions["server1"].events.stop()  # type: ignore[attr-defined]
