"""GET /events: server-sent events with each user's image changes and the worker status.

One poller thread per user with open streams (not per stream): it lists the user's
album every EVENTS_POLL_SECONDS and sends what changed to every stream of that user.
It ends by itself once the user's last stream has gone. A stream notices a vanished
client at its next write (an event or the heartbeat comment) and unsubscribes then,
so no thread outlives its client by more than one heartbeat.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator

from flask import Blueprint, Response

from server1.albums import Albums, counts
from server1.responses import current_user, json_error
from server1.services import services
from studio.storage import StorageError

bp = Blueprint("events", __name__)
log = logging.getLogger(__name__)

Event = tuple[str, dict]
QUEUE_BACKLOG = 5000  # events a stream may fall behind before it is ended


class _Feed:
    def __init__(self) -> None:
        self.streams: set[queue.Queue[Event | None]] = set()
        self.images: dict[str, dict] | None = None  # what the streams were last told
        self.status: dict | None = None


class EventHub:
    def __init__(self, albums: Albums, serving: Callable[[], dict], poll_seconds: float) -> None:
        self.albums = albums
        self.serving = serving  # {"worker", "device"}: Lifecycle.serving
        self.poll_seconds = poll_seconds
        self._feeds: dict[str, _Feed] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def status_payload(self, images: list[dict]) -> dict:
        return {**self.serving(), "queue": counts(images)}

    def subscribe(self, user: str) -> queue.Queue[Event | None]:
        stream: queue.Queue[Event | None] = queue.Queue()
        with self._lock:
            feed = self._feeds.get(user)
            if feed is None:
                feed = self._feeds[user] = _Feed()
                threading.Thread(target=self._poll, args=(user, feed), name=f"events-{user}", daemon=True).start()
            elif feed.status is not None:
                stream.put_nowait(("status", feed.status))
            feed.streams.add(stream)
            if self._stopped.is_set():
                stream.put_nowait(None)  # shutting down: end at once
        return stream

    def unsubscribe(self, user: str, stream: queue.Queue[Event | None]) -> None:
        with self._lock:
            feed = self._feeds.get(user)
            if feed is not None:
                feed.streams.discard(stream)

    def stream_count(self, user: str) -> int:
        with self._lock:
            feed = self._feeds.get(user)
            return len(feed.streams) if feed else 0

    def stop(self) -> None:
        """Shutdown: the pollers stop and every open stream ends (its client reconnects)."""
        self._stopped.set()
        with self._lock:
            streams = [stream for feed in self._feeds.values() for stream in feed.streams]
        for stream in streams:
            stream.put(None)

    def _poll(self, user: str, feed: _Feed) -> None:
        while not self._stopped.is_set():
            with self._lock:
                if not feed.streams:
                    del self._feeds[user]  # a later subscriber starts a new feed and thread
                    return
                streams = list(feed.streams)
            try:
                self._send(feed, streams, self._changes(user, feed))
            except StorageError as e:
                log.warning("events for %s: storage unavailable: %s", user, e)
            except Exception:
                log.exception("events for %s: poll failed", user)  # keep the feed alive
            self._stopped.wait(self.poll_seconds)

    def _changes(self, user: str, feed: _Feed) -> list[Event]:
        images = self.albums.images(user)
        current = {image["id"]: image for image in images}
        events: list[Event] = []
        if feed.images is not None:
            events += [("image", image) for image_id, image in current.items() if feed.images.get(image_id) != image]
            events += [("image", {"id": image_id, "deleted": True}) for image_id in feed.images.keys() - current.keys()]
        feed.images = current
        status = self.status_payload(images)
        if status != feed.status:
            feed.status = status
            events.append(("status", status))
        return events

    def _send(self, feed: _Feed, streams: list[queue.Queue[Event | None]], events: list[Event]) -> None:
        for stream in streams:
            if stream.qsize() + len(events) > QUEUE_BACKLOG:
                # The client stopped reading: end its stream (it reconnects and reloads).
                with self._lock:
                    feed.streams.discard(stream)
                with stream.mutex:
                    stream.queue.clear()
                stream.put(None)
                continue
            for event in events:
                stream.put(event)


def _format(event: Event) -> str:
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/events")
def events() -> Response | tuple[Response, int]:
    user = current_user()
    hub = services().events
    if hub.stream_count(user) >= services().config.events_max_streams:
        return json_error("too many open event streams for this user; close some tabs", 429)
    heartbeat = services().config.events_heartbeat_seconds
    stream = hub.subscribe(user)

    def generate() -> Iterator[str]:
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    event = stream.get(timeout=heartbeat)
                except queue.Empty:
                    yield ": heartbeat\n\n"
                    continue
                if event is None:
                    return
                yield _format(event)
        finally:
            hub.unsubscribe(user, stream)

    return Response(
        generate(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
