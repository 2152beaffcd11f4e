"""The long-lived objects of one app instance, reachable from any request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from studio.jobs import Jobs
from studio.storage import Storage

if TYPE_CHECKING:
    from server1.albums import Albums
    from server1.config import Config
    from server1.cutting import Decoders
    from server1.encoding import Encoder
    from server1.events import EventHub
    from server1.lifecycle import Lifecycle
    from server1.sessions import Sessions


@dataclass
class Services:
    config: Config  # the app's settings (server1/config.py)
    storage: Storage
    jobs: Jobs
    lifecycle: Lifecycle
    sessions: Sessions
    albums: Albums
    events: EventHub
    decoders: Decoders  # the editor's prompt decoders, one onnxruntime session each (server1/cutting.py)
    encoder: Encoder  # Server1's own image encoder, one embedding at a time (server1/encoding.py)


def services() -> Services:
    return current_app.extensions["server1"]
