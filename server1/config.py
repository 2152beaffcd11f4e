"""Server1's environment variables (docs/architecture.md "Variables"), read once per process.

`load()` parses them the first time and hands the same Config to every later caller: gunicorn's settings
(server1/gunicorn.conf.py, in the master whose worker inherits it) and the app factory in the worker. Every
value is checked here, before the app starts, so a bad variable stops start-up with a clear message
(ConfigError) instead of failing on the first request. `Config.from_env(field=value, ...)` builds one whose
given fields are not read from the environment (tests, benchmarks).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from server1.lifecycle.config import LifecycleConfig
from studio import config, layout
from studio.errors import ConfigError


@dataclass(frozen=True)
class Config:
    shared_dir: str
    users: Mapping[str, str]  # {user: password}: APP_USER1/APP_PASS1 and APP_USER2/APP_PASS2, at least one
    lifecycle: LifecycleConfig
    secret_key: str | None  # None: one generated on the first start and kept in storage (server1.app)
    max_upload_mb: int
    max_image_pixels: int
    session_cookie_secure: bool
    start_background: bool  # whether the serving process starts the lifecycle's threads
    trust_proxy: int  # reverse proxies (load balancer) in front whose X-Forwarded-* to trust
    events_poll_seconds: float
    events_heartbeat_seconds: float
    events_max_streams: int
    port: int  # gunicorn's bind, 0.0.0.0:PORT (`python -m server1` binds HOST:PORT)
    workers: int  # gunicorn's worker processes (WEB_CONCURRENCY)
    threads: int  # threads of each worker (GUNICORN_THREADS); every open event stream holds one
    login_limit: str = "10 per minute"  # failed logins of one address
    canvas_max_bytes: int = 2_000_000

    def __post_init__(self) -> None:
        check_users(self.users)

    @classmethod
    def from_env(cls, **given: Any) -> Config:
        """The environment's values, except for the fields given (read only what the caller did not give)."""
        shared_dir = given["shared_dir"] if "shared_dir" in given else config.shared_dir()
        read: dict[str, Callable[[], Any]] = {
            "shared_dir": lambda: shared_dir,
            "users": users_from_env,
            "lifecycle": lambda: LifecycleConfig.from_env(shared_dir),
            "secret_key": lambda: config.env_str("SECRET_KEY"),
            "max_upload_mb": lambda: config.env_int("MAX_UPLOAD_MB", 50, 1, 10_000),
            "max_image_pixels": lambda: config.env_int("MAX_IMAGE_PIXELS", 100_000_000, 1, 2_000_000_000),
            "session_cookie_secure": lambda: config.env_bool("SESSION_COOKIE_SECURE"),
            "start_background": lambda: config.env_bool("START_BACKGROUND", True),
            "trust_proxy": lambda: config.env_int("TRUST_PROXY", 0, 0, 5),
            "events_poll_seconds": lambda: config.env_float("EVENTS_POLL_SECONDS", 1.0, 0.1, 60),
            "events_heartbeat_seconds": lambda: config.env_float("EVENTS_HEARTBEAT_SECONDS", 15.0, 0.2, 300),
            "events_max_streams": lambda: config.env_int("EVENTS_MAX_STREAMS", 50, 1, 10_000),
            "port": lambda: config.env_int("PORT", 5050, 1, 65535),
            "workers": lambda: config.env_int("WEB_CONCURRENCY", 1, 1, 64),
            "threads": lambda: config.env_int("GUNICORN_THREADS", 128, 1, 1024),
        }
        return cls(**{name: value() for name, value in read.items() if name not in given}, **given)

    @property
    def max_content_length(self) -> int:
        """The largest request body, in bytes (Flask's MAX_CONTENT_LENGTH)."""
        return self.max_upload_mb * 1024 * 1024


def users_from_env() -> dict[str, str]:
    """APP_USER1/APP_PASS1 and APP_USER2/APP_PASS2 -> {user: password} (Config checks them)."""
    users: dict[str, str] = {}
    for n in (1, 2):
        # The password as it is: spaces at either end are part of it.
        user, password = config.env_str(f"APP_USER{n}"), os.environ.get(f"APP_PASS{n}", "")
        if not user and not password:
            continue
        if not user or not password:
            raise ConfigError(f"APP_USER{n} and APP_PASS{n} must be set together")
        users[user] = password
    return users


def check_users(users: Mapping[str, str]) -> None:
    """At least one login, each a valid user name with a password."""
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


@functools.cache
def load() -> Config:
    """The process's Config; ConfigError with a clear message when a variable is unusable."""
    return Config.from_env()
