"""Errors shared by both servers."""


class ConfigError(Exception):
    """A setting (environment variable, SHARED_DIR, ...) is unusable; the message says why."""


class Refused(Exception):
    """A request that cannot be served: its HTTP status and a message for the caller (both servers
    answer it as JSON {"error": message} with that status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
