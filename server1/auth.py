"""Login, logout and the gate in front of every other route."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from server1.responses import json_error, wants_json
from server1.services import services

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

# Reachable without a session. Unknown paths (endpoint None) answer 404 either way.
PUBLIC = {"auth.login", "pages.healthz", "static"}
LOGIN_FAILED = "Wrong username or password."
THROTTLED = "Too many failed logins from your address. Wait a minute, then try again."


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def check_login(users: Mapping[str, str], username: str, password: str) -> str | None:
    """The user whose name and password both match, compared in constant time (every pair
    is checked; hashing first hides the lengths too)."""
    found = None
    for user, secret in users.items():
        same_user = hmac.compare_digest(_digest(username), _digest(user))
        same_password = hmac.compare_digest(_digest(password), _digest(secret))
        if same_user & same_password:
            found = user
    return found


def load_user() -> Response | tuple[Response, int] | None:
    """before_request: set g.user from a live session; refuse the rest unless public."""
    g.user = None
    user = session.get("user")
    if user in services().config.users and services().sessions.user_of(session.get("sid")) == user:
        g.user = user
    if g.user or request.endpoint in PUBLIC or request.endpoint is None:
        return None
    if wants_json():
        return json_error("login required", 401)
    return redirect(url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method != "POST":  # GET or HEAD (Flask routes HEAD here too): the form, never a login attempt
        if g.user:
            return redirect(url_for("pages.index"))
        return render_template("login.html", error=None)
    username = request.form.get("username", "")
    user = check_login(services().config.users, username, request.form.get("password", ""))
    if user is None:
        log.info("failed login from %s", request.remote_addr)  # never the name or password tried
        return render_template("login.html", error=LOGIN_FAILED, username=username), 401
    sessions = services().sessions
    sessions.end(session.get("sid"))
    session.clear()  # a fresh session: nothing set before login survives it (no fixation)
    session["user"] = user
    session["sid"] = sessions.start(user)
    session.permanent = True
    services().lifecycle.notify_login()
    log.info("login of %s from %s", user, request.remote_addr)
    return redirect(url_for("pages.index"), 303)


@bp.post("/logout")
def logout() -> Response:
    services().sessions.end(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"), 303)
