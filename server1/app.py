"""The app factory: configuration, extensions, blueprints, security headers, error pages.

create_app builds the app and starts nothing; the entry points start and stop its background work
with start_background / stop_background (gunicorn's hooks in server1/gunicorn.conf.py, which
`python -m server1` and `make run` use too; docs/architecture.md "Start and stop")."""

from __future__ import annotations

import logging
import secrets
import socket
from datetime import timedelta

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from server1 import (
    api,
    auth,
    cutting,
    editor,
    editor_models,
    editor_page,
    encoding,
    events,
    files,
    pages,
    upload,
)
from server1.albums import Albums
from server1.config import Config
from server1.config import load as load_config
from server1.lifecycle import Lifecycle
from server1.responses import CSP, SECURITY_HEADERS, error
from server1.services import Services, services
from server1.sessions import Sessions
from studio import layout
from studio.errors import ConfigError, Refused
from studio.jobs import Jobs
from studio.storage import Storage, StorageError, open_storage

log = logging.getLogger(__name__)

SESSION_DAYS = 14
EMBED_WAIT = 3.0  # seconds a request waits for its turn to compute an embedding before a 503


def secret_key(storage: Storage, configured: str | None) -> str:
    """SECRET_KEY, else one generated on first start and kept in storage (the first of
    several starting workers wins the exclusive create; the others read its key)."""
    if configured:
        return configured
    key = layout.system("secret_key")
    fresh = secrets.token_hex(32)
    if storage.create_exclusive(key, fresh.encode()) is not None:
        return fresh
    stored = storage.read(key).decode("utf-8", "replace").strip()
    if len(stored) < 32:
        raise ConfigError(f"the stored secret key ({storage.root}/{key}) is unusable; delete it to make a new one")
    return stored


def create_app(config: Config | None = None) -> Flask:
    """Server1 with config, else the process's (server1.config.load(): the environment's); ConfigError when
    unusable. Checks SHARED_DIR and reads (on the very first start creates) the stored secret key: the app
    cannot work without either. Starts no thread and registers nothing to run at exit."""
    config = config or load_config()
    storage = open_storage(config.shared_dir)
    app = Flask("server1")
    app.config.update(  # Flask's own settings; the app's are in Services.config
        SECRET_KEY=secret_key(storage, config.secret_key),
        MAX_CONTENT_LENGTH=config.max_content_length,
        SESSION_COOKIE_SECURE=config.session_cookie_secure,
        SESSION_COOKIE_NAME="studio_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=SESSION_DAYS),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session: pages stay open for hours
    )
    if config.trust_proxy:
        # Flask's documented way to wrap its WSGI app (a method mypy will not see replaced).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trust_proxy, x_proto=config.trust_proxy
        )

    jobs = Jobs(storage, owner=f"server1@{socket.gethostname()}")
    lifecycle = Lifecycle(storage, list(config.users), config=config.lifecycle)
    albums = Albums(storage, jobs)
    hub = events.EventHub(albums, lifecycle.serving, config.events_poll_seconds)
    app.extensions["server1"] = Services(
        config,
        storage,
        jobs,
        lifecycle,
        Sessions(storage, SESSION_DAYS * 86400),
        albums,
        hub,
        cutting.Decoders(),
        encoding.Encoder(wait=EMBED_WAIT),
    )

    # Order matters: the login gate runs before the CSRF check, so a request without a
    # session gets 401/redirect rather than a CSRF error.
    app.before_request(auth.load_user)
    CSRFProtect(app)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://", headers_enabled=False)
    # Only failed logins count (401); the 11th attempt within a minute gets 429.
    limiter.limit(
        config.login_limit,
        methods=["POST"],
        deduct_when=lambda response: response.status_code == 401,
        exempt_when=lambda: request.endpoint != "auth.login",
        error_message=auth.THROTTLED,
    )(auth.bp)
    for blueprint in (
        auth.bp,
        pages.bp,
        upload.bp,
        api.bp,
        files.bp,
        events.bp,
        editor_page.bp,
        editor_models.bp,
        editor.bp,
    ):
        app.register_blueprint(blueprint)
    _add_headers(app)
    _add_error_handlers(app)
    return app


def start_background(app: Flask) -> None:
    """In the process that serves app: the lifecycle's threads (model weights, the scheduler), unless
    START_BACKGROUND is off."""
    services = app.extensions["server1"]
    if services.config.start_background:
        services.lifecycle.start()


def stop_background(app: Flask) -> None:
    """End the open event streams, stop the lifecycle's threads and release the scheduler lease, so the
    next Server1 leads at its first look instead of waiting for the lease to run out."""
    services = app.extensions["server1"]
    services.events.stop()
    services.lifecycle.stop()


def _add_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response


def _add_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(e: CSRFError) -> tuple[Response | str, int]:
        return error(f"CSRF check failed: {e.description} Reload the page and try again.", 400)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e: RequestEntityTooLarge) -> tuple[Response | str, int]:
        return error(f"the upload is too large (limit {services().config.max_upload_mb} MB)", 413)

    @app.errorhandler(StorageError)
    def storage_failed(e: StorageError) -> tuple[Response | str, int]:
        log.error("storage error on %s %s: %s", request.method, request.path, e)
        return error("storage is unavailable right now; try again shortly", 503)

    @app.errorhandler(Refused)
    def refused(e: Refused) -> tuple[Response | str, int]:
        return error(str(e), e.status)

    @app.errorhandler(layout.BadName)
    def bad_name(e: layout.BadName) -> tuple[Response | str, int]:
        return error("not found", 404)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> HTTPException | tuple[Response | str, int]:
        if e.code is None or e.code < 400:
            return e
        if isinstance(e, InternalServerError):
            log.error("internal error on %s %s", request.method, request.path, exc_info=e.original_exception)
            return error("internal error; it has been logged", 500)
        own = e.description if e.description != type(e).description else None  # not Werkzeug's stock wording
        return error(own or e.name, e.code)
