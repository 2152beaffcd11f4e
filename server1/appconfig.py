"""Server1's settings: from create_app's config dict where given, else the environment.

Everything is checked here, before the app starts, so a bad variable stops start-up with
a clear message (ConfigError) instead of failing on the first request.
"""

from __future__ import annotations

import os

from server1.lifecycle.config import LifecycleConfig
from studio import config, layout
from studio.errors import ConfigError


def users_from_env() -> dict[str, str]:
    """APP_USER1/APP_PASS1 and APP_USER2/APP_PASS2 -> {user: password}; at least one pair."""
    users: dict[str, str] = {}
    for n in (1, 2):
        user, password = config.env_str(f"APP_USER{n}"), os.environ.get(f"APP_PASS{n}", "")
        if not user and not password:
            continue
        if not user or not password:
            raise ConfigError(f"APP_USER{n} and APP_PASS{n} must be set together")
        users[user] = password
    return check_users(users)


def check_users(users: dict[str, str]) -> dict[str, str]:
    if not users:
        raise ConfigError(
            "no login configured: set APP_USER1 and APP_PASS1 (and optionally APP_USER2/APP_PASS2); "
            "there is no default password"
        )
    for user, password in users.items():
        try:
            layout.check_user(user)
        except layout.BadName as e:
            raise ConfigError(f"APP_USER: {e}") from None
        if not password:
            raise ConfigError(f"the password of {user!r} is empty")
    return users


def load(overrides: dict | None = None) -> dict:
    """Flask config for Server1: overrides win over the environment."""
    given = dict(overrides or {})

    def pick(key: str, read):  # read the environment only for what the caller did not give
        return given.pop(key) if key in given else read()

    shared_dir = pick("SHARED_DIR", config.shared_dir)
    out = {
        "SHARED_DIR": shared_dir,
        "LIFECYCLE": pick("LIFECYCLE", lambda: LifecycleConfig.from_env(shared_dir)),
        "USERS": check_users(dict(pick("USERS", users_from_env))),
        "SECRET_KEY": pick("SECRET_KEY", lambda: config.env_str("SECRET_KEY")),
        "MAX_UPLOAD_MB": pick("MAX_UPLOAD_MB", lambda: config.env_int("MAX_UPLOAD_MB", 50, 1, 10_000)),
        "MAX_IMAGE_PIXELS": pick(
            "MAX_IMAGE_PIXELS", lambda: config.env_int("MAX_IMAGE_PIXELS", 100_000_000, 1, 2_000_000_000)
        ),
        "SESSION_COOKIE_SECURE": pick("SESSION_COOKIE_SECURE", lambda: config.env_bool("SESSION_COOKIE_SECURE")),
        "START_BACKGROUND": pick("START_BACKGROUND", lambda: config.env_bool("START_BACKGROUND", True)),
        # Number of reverse proxies (load balancer) in front whose X-Forwarded-* to trust.
        "TRUST_PROXY": pick("TRUST_PROXY", lambda: config.env_int("TRUST_PROXY", 0, 0, 5)),
        "LOGIN_LIMIT": pick("LOGIN_LIMIT", lambda: "10 per minute"),
        "EVENTS_POLL_SECONDS": pick(
            "EVENTS_POLL_SECONDS", lambda: config.env_float("EVENTS_POLL_SECONDS", 1.0, 0.1, 60)
        ),
        "EVENTS_HEARTBEAT_SECONDS": pick(
            "EVENTS_HEARTBEAT_SECONDS", lambda: config.env_float("EVENTS_HEARTBEAT_SECONDS", 15.0, 0.2, 300)
        ),
        "EVENTS_MAX_STREAMS": pick("EVENTS_MAX_STREAMS", lambda: config.env_int("EVENTS_MAX_STREAMS", 50, 1, 10_000)),
        "CANVAS_MAX_BYTES": pick("CANVAS_MAX_BYTES", lambda: 2_000_000),
    }
    out["MAX_CONTENT_LENGTH"] = out["MAX_UPLOAD_MB"] * 1024 * 1024
    out.update(given)  # anything else (e.g. TESTING) goes to Flask as is
    return out
