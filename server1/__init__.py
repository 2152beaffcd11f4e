"""Server1: the web app (login, upload, albums, live updates) and the endpoint lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from server1.config import Config


def create_app(config: Config | None = None) -> Flask:
    """The Flask app (gunicorn: "server1:create_app()"); see server1.app.create_app."""
    from server1.app import create_app as build  # imported here so `import server1.lifecycle` stays light

    return build(config)
