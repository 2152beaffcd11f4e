"""The app page and the health check."""

from __future__ import annotations

import logging
import platform
from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, Response, jsonify, render_template

from server1.responses import current_user
from server1.services import services
from studio.storage import StorageError

bp = Blueprint("pages", __name__)
log = logging.getLogger(__name__)
_PACKAGES = ("flask", "gunicorn", "pillow", "pillow-heif", "boto3")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


@bp.get("/")
def index() -> str:
    return render_template("index.html", user=current_user())


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """No login needed; says what works, never a secret (no keys, no passwords, no URLs with tokens)."""
    try:
        services().storage.check()
        storage = "ok"
    except StorageError as e:
        log.warning("health: storage unavailable: %s", e)
        storage = f"unavailable: {e}"
    try:
        lifecycle = services().lifecycle.health()
    except Exception as e:  # the health page must answer whatever the background work is doing
        log.exception("health: lifecycle")
        lifecycle = {"error": str(e)}
    ok = storage == "ok"
    return jsonify(ok=ok, storage=storage, versions=_versions(), lifecycle=lifecycle), 200 if ok else 503
