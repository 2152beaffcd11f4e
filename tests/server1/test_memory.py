"""Server1 under gunicorn, as its image runs it, gives back the memory of large uploads (found by the
soak, bench/soak.py: ~350 MB more after 300 uploads of up to 12 MP)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from harness.images import encode, photo
from harness.server1 import Server


def test_large_uploads_leave_server1_no_bigger(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "shared"), gunicorn=True).start()
    try:
        session = server.login("alice")
        # 3 to 12 MP in three formats: buffers of many sizes, as a day of uploads has.
        sizes = [(2000 + 250 * k, 1500 + 190 * k) for k in range(9)]
        images = [encode(photo(*size), fmt) for size in sizes for fmt in ("JPEG", "PNG", "WEBP")]

        def upload(n: int) -> int:
            files = {"file": (f"big-{n}", images[n % len(images)])}
            return session.post(server.url + "/upload", files=files, timeout=300).status_code

        def rss() -> float:
            worker = psutil.Process(server.proc.pid).children()[0]
            return worker.memory_info().rss / 2**20

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(upload, range(len(images)))) == {200}  # each size once
            before = rss()
            assert set(pool.map(upload, range(3 * len(images)))) == {200}
        assert rss() - before < 100, f"{before:.0f} MB -> {rss():.0f} MB"
    finally:
        server.stop()
