"""What a request is (API call or page) and how errors are answered to each."""

from __future__ import annotations

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


def wants_json() -> bool:
    if request.path.startswith(API_PREFIXES) or request.headers.get("X-Requested-With") == "XMLHttpRequest":
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
    """JSON for API callers; the login page for its own errors (CSRF, throttling); else plain text."""
    if wants_json():
        return json_error(message, status)
    if request.endpoint == "auth.login":
        return render_template("login.html", error=message), status
    return Response(f"{status}: {message}\n", mimetype="text/plain"), status


def current_user() -> str:
    """The logged-in user; every route but the public ones runs only with one."""
    return g.user
