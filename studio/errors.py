"""Errors shared by both servers."""


class ConfigError(Exception):
    """A setting (environment variable, SHARED_DIR, ...) is unusable; the message says why."""
