"""Reading environment variables with clear errors instead of tracebacks deep inside."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from studio import layout
from studio.errors import ConfigError

T = TypeVar("T")

DEFAULT_SHARED_DIR = "/mnt/s3"  # where the bucket is mounted when nothing else is said


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def env_float(name: str, default: float, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw!r}")
    return value


def env_int(name: str, default: int, minimum: int, maximum: int) -> int:
    value = env_float(name, default, minimum, maximum)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {os.environ[name]!r}")
    return int(value)


def parse_bool(raw: str | None) -> bool | None:
    """1/0, true/false, yes/no, on/off (any case) -> True/False; None for anything else."""
    value = (raw or "").strip().lower()
    return True if value in ("1", "true", "yes", "on") else False if value in ("0", "false", "no", "off") else None


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = parse_bool(raw)
    if value is None:
        raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw.lower()!r}")
    return value


def shared_dir() -> str:
    """SHARED_DIR; else s3://$S3_BUCKET when only the bucket is named (native S3 is the
    backend with atomic claims across hosts); else the mount point /mnt/s3."""
    bucket = env_str("S3_BUCKET")
    return env_str("SHARED_DIR") or (f"s3://{bucket}" if bucket else DEFAULT_SHARED_DIR)


def models_dir(shared: str | None = None) -> str:
    """MODELS_DIR, else <shared or SHARED_DIR>/models (a path or an s3:// URL)."""
    return env_str("MODELS_DIR") or f"{(shared or shared_dir()).rstrip('/')}/{layout.MODELS}"


def or_exit(program: str, read: Callable[[], T]) -> T:
    """read(); when a setting is unusable (ConfigError), the process ends with one line on stderr,
    "<program>: cannot start: <why>", and exit status 2: no traceback (gunicorn prints one for any other
    exception of its settings file)."""
    try:
        return read()
    except ConfigError as e:
        print(f"{program}: cannot start: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
