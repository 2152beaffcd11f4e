"""What a request is (API call or page) and how errors are answered to each."""

from __future__ import annotations

from http import HTTPStatus

from flask import Response, g, jsonify, render_template, request

# The page loads its scripts and styles from /static only: no inline script, no CDN.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Paths whose callers are scripts or the page's own fetch()es: errors answer as JSON.
API_PREFIXES = ("/api/", "/upload", "/events", "/files/")
# A browser's error page (templates/error.html): a heading and what happened, in words. None: the words the
# handler gave (they say more, e.g. the upload limit). Any other status: its name and the handler's words.
ERROR_PAGES = {
    403: ("Not allowed", "This page belongs to another account. Log in as its owner to see it."),
    404: ("Not found", "There is nothing at this address: the photo may have been deleted, or the link is mistyped."),
    413: ("Too large", None),
    500: ("Something went wrong", "The server met an error it did not expect. It has been logged; try again shortly."),
}


def wants_json() -> bool:
    if request.path.startswith(API_PREFIXES) or request.headers.get("X-Requested-With") == "XMLHttpRequest":
        return True
    if request.is_json:  # a JSON body: a script's request, whatever it accepts
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def json_body() -> object | None:
    """The request's JSON; None when it is missing, malformed or nested too deeply to parse."""
    try:
        return request.get_json(silent=True)
    except RecursionError:  # json raises it, not ValueError, for a body like [[[[...]]]]
        return None


def json_error(message: str, status: int, **extra: object) -> tuple[Response, int]:
    return jsonify(error=message, **extra), status


def error(message: str, status: int) -> tuple[Response | str, int]:
    """JSON for API callers; the login page for its own errors (CSRF, throttling); else a page in the
    app's style saying what happened, with a way back to the album (docs/architecture.md "Routes")."""
    if wants_json():
        return json_error(message, status)
    if request.endpoint == "auth.login":
        return render_template("login.html", error=message), status
    title, words = ERROR_PAGES.get(status, (HTTPStatus(status).phrase, None))
    return render_template("error.html", status=status, title=title, message=words or message), status


def current_user() -> str:
    """The logged-in user; every route but the public ones runs only with one."""
    return g.user
