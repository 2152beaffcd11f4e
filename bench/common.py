"""What every figure shares: the result row, timing, test photos, CPU pinning, and the local
servers (a moto server, a request-counting proxy in front of it, a Server1 process).

The moto server and the Server1 process are the harness the test suites stand on too (harness/);
bench/__init__.py sets fake AWS credentials, so nothing here can reach AWS.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pillow_heif
import requests
import skimage.data
from PIL import Image

from harness.aws import MotoServer
from harness.images import encode
from studio import config

pillow_heif.register_heif_opener()

# BENCH_QUICK=1: fewer repetitions and smaller inputs, to prove the harness works (tests/bench).
QUICK = config.env_bool("BENCH_QUICK")


@dataclass
class Row:
    """One line of the table. value/baseline are medians in `unit`; ratio is baseline/value
    (how many times less time, requests or memory the real code needs), None without a baseline."""

    figure: str
    measure: str
    value: float | None  # None: not measured here (the note says why)
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.value:
            return None
        return self.baseline / self.value

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def verdict(ok: bool) -> bool | None:
    """Whether a target is met; not judged on BENCH_QUICK's small inputs."""
    return None if QUICK else ok


def reps(full: int, quick: int = 1) -> int:
    return quick if QUICK else full


def timed(fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None) -> list[float]:
    """Wall-clock seconds of each of `repeat` calls of fn (setup, untimed, before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def photo(width: int, height: int, noise: float = 6.0, seed: int = 0) -> Image.Image:
    """A real photo (scikit-image's cat) scaled up to width x height, with sensor-like noise so
    encoded files have realistic sizes (a 12-MP JPEG of a smooth upscale would be far too small)."""
    base = Image.fromarray(skimage.data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(base, dtype=np.int16)
    grain = np.random.default_rng(seed).normal(0.0, noise, pixels.shape).astype(np.int16)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def heic(image: Image.Image) -> bytes:
    """HEIC as a phone writes it; x265's fastest preset (its default takes minutes for 12 MP)."""
    return encode(image, "HEIF", quality=85, enc_params={"preset": "ultrafast"})


def _threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def pin(pid: int, cpu: int) -> None:
    """Every thread of process pid onto one CPU (threads it starts later inherit it)."""
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {cpu})


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """This whole process on one CPU (the last one it may use) for the block."""
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    pin(os.getpid(), cpu)
    try:
        yield cpu
    finally:
        for tid in _threads(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, allowed)


# -- AWS stand-ins -------------------------------------------------------------------------------
_moto: MotoServer | None = None


def moto() -> MotoServer:
    """One moto server process for the whole run (stopped by stop_servers)."""
    global _moto
    if _moto is None:
        server = MotoServer()
        server.start()
        _moto = server
        os.environ["AWS_ENDPOINT_URL"] = server.url  # as the moto_server fixture does
    return _moto


def stop_servers() -> None:
    global _moto
    if _moto is not None:
        _moto.stop()
        _moto = None
        os.environ.pop("AWS_ENDPOINT_URL", None)


def aws_action(method: str, path: str, query: str, target: str) -> str:
    """A name for one AWS request: SageMaker's X-Amz-Target, else the S3 operation."""
    if target:
        return target.rpartition(".")[2]
    args = parse_qs(query, keep_blank_values=True)
    key = path.strip("/").partition("/")[2]  # path style: /bucket/key
    if method == "GET":
        return "S3 LIST" if "list-type" in args or not key else "S3 GET"
    if method == "POST" and "delete" in args:
        return "S3 DELETE (batch)"
    return f"S3 {method}"


class CountingProxy:
    """A reverse proxy on 127.0.0.1 in front of the moto server that counts every request
    by AWS action: the storage requests a piece of code makes, counted at the server."""

    def __init__(self, upstream: str) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                action = aws_action(self.command, parts.path, parts.query, self.headers.get("X-Amz-Target", ""))
                with proxy.lock:
                    proxy.counts[action] += 1
                answer = session.request(
                    self.command, upstream + self.path, data=body, headers=dict(self.headers), timeout=60
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                payload = answer.content
                length = answer.headers.get("Content-Length", "0") if self.command == "HEAD" else len(payload)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
