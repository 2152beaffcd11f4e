"""A local HTTP server serving model weights (the `mirror` fixture): ranges, a dropped connection."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from studio.modelfiles import ModelFile


@dataclass
class Mirror:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)  # close the connection halfway, once
    hold: dict[str, threading.Event] = field(default_factory=dict)  # send half, then wait for the test
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


@contextlib.contextmanager
def serving_mirror(host: str = "127.0.0.1") -> Iterator[Mirror]:
    """The conftest's `mirror` fixture; host: the address to listen on (a container network's gateway, for
    containers on that network)."""
    m = Mirror()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            m.requests.append((self.path, self.headers.get("Range")))
            data = m.files.get(name)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if name in m.drop_once:
                m.drop_once.discard(name)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if name in m.hold:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                m.hold[name].wait()
                body = body[len(body) // 2 :]
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    m.url = f"http://{host}:{server.server_port}"
    yield m
    for held in m.hold.values():
        held.set()
    server.shutdown()


def blob(n: int, seed: int = 1) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def entry(mirror: Mirror, name: str, data: bytes, **override: object) -> ModelFile:
    mirror.files[name] = data
    fields = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **override}
    return ModelFile(name, f"{mirror.url}/weights/{name}", **fields)  # type: ignore[arg-type]
