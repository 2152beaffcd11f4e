"""Server2 gives the C allocator's free memory back after every job (server2.memory, README "Soak"): what a
job freed no longer counts in the process's RSS, however the job ended."""

from __future__ import annotations

import threading

import psutil
import pytest

from server2 import memory
from server2.dispatch import Dispatcher
from server2.outcome import Outcome

MB = 2**20


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


@pytest.mark.skipif(not memory.release(), reason="this C library has no malloc_trim (not glibc)")
def test_release_hands_back_what_a_job_thread_freed() -> None:
    kept: list[bytearray] = []

    def job() -> None:
        # 200 MB in blocks malloc keeps in this thread's arena (as a job's do in the dispatcher's thread), one
        # in 32 still in use: freeing the rest leaves the arena's pages free but held, and RSS where it was.
        blocks = [bytearray(4096) for _ in range(50_000)]
        kept.extend(blocks[::32])
        del blocks

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    held = rss_mb()
    assert memory.release()
    assert held - rss_mb() > 100, "malloc_trim returned less than half of what was freed"
    assert len(kept) == 1563


class FakeWorker:
    """Records each job and each release in order; the second job raises, as storage trouble would."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def run(self, user: str, image_id: str, resized_key: str) -> Outcome:
        self.events.append(f"run {image_id}")
        if image_id == "p1":
            raise RuntimeError("storage trouble")
        return Outcome("done")


def test_the_dispatcher_releases_memory_after_every_job(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(memory, "release", lambda: events.append("release") or True)
    dispatcher = Dispatcher(FakeWorker(events), threading.Event())  # type: ignore[arg-type]
    futures = [dispatcher.submit("alice", f"p{n}", f"alice/resized/p{n}.png") for n in range(3)]
    thread = threading.Thread(target=dispatcher.run)
    thread.start()
    assert [f.result(10).state for f in futures] == ["done", "error", "done"]
    dispatcher.stop(10)
    thread.join(10)
    assert events == ["run p0", "release", "run p1", "release", "run p2", "release"]
