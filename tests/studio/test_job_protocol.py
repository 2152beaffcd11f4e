"""The job protocol (studio.jobs) on both backends, with an injected clock for leases."""

from __future__ import annotations

import itertools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from studio import layout
from studio.jobs import Jobs, Scanner, StatusConflict
from studio.storage import FileStorage, NotFound, Storage

USER = "alice"
LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """Wraps a storage and notes every change made through it, in order."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.changes: list[tuple[str, str]] = []

    def __getattr__(self, name: str):
        method = getattr(self.storage, name)
        if name not in ("write", "write_json", "move", "delete", "delete_prefix", "create_exclusive", "replace_if"):
            return method

        def recorded(key: str, *args, **kwargs):
            target = args[0] if name == "move" else key
            self.changes.append((name.removesuffix("_json"), target))  # write_json is a write
            return method(key, *args, **kwargs)

        return recorded


@pytest.fixture
def clock() -> Clock:
    return Clock()


def workers(storage: Storage, clock: Clock, n: int = 2, max_attempts: int = 3) -> list[Jobs]:
    return [Jobs(storage, f"w{i}", lease_seconds=LEASE, max_attempts=max_attempts, clock=clock) for i in range(n)]


def add_job(storage: Storage, image_id: str = "img", user: str = USER) -> str:
    key = layout.resized(user, image_id)
    storage.write(key, b"png")
    return key


def stage(jobs: Jobs, claim, n: int = 1) -> dict[str, str]:
    staged = {}
    for i in range(1, n + 1):
        key = claim.staging + f"mask{i}.png"
        jobs.storage.write(key, claim.token.encode())
        staged[key] = layout.mask(claim.user, claim.image_id, i)
    return staged


def test_claim_is_exclusive_while_the_lease_lives(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b = workers(storage, clock)
    claim = a.claim(USER, "img")
    assert claim is not None and (claim.owner, claim.attempt) == ("w0", 1)
    assert b.claim(USER, "img") is None
    assert a.claim(USER, "img") is None  # not even the holder claims twice
    status = a.read_status(USER, "img")
    assert status is not None
    assert (status["state"], status["attempts"], status["owner"]) == ("processing", 1, "w0")
    clock.advance(LEASE - 1)
    assert b.claim(USER, "img") is None


def test_renew_extends_the_lease(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b = workers(storage, clock)
    claim = a.claim(USER, "img")
    clock.advance(LEASE - 1)
    assert a.renew(claim)
    clock.advance(LEASE - 1)  # past the first lease, inside the renewed one
    assert b.claim(USER, "img") is None
    assert a.complete(claim, stage(a, claim))


def test_stale_claim_is_taken_over_and_the_old_holder_loses(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b, c = workers(storage, clock, 3)
    old = a.claim(USER, "img")
    old_staged = stage(a, old)
    clock.advance(LEASE + 1)
    new = b.claim(USER, "img")
    assert new is not None and (new.owner, new.attempt) == ("w1", 2)
    assert c.claim(USER, "img") is None  # one taker only
    assert not list(storage.list(old.staging))  # the dead holder's staged files are gone
    assert not a.renew(old)
    assert a.fail(old, "late") == "lost"
    assert not a.complete(old, old_staged)
    assert not storage.exists(layout.mask(USER, "img", 1))  # the loser published nothing
    assert b.complete(new, stage(b, new))
    assert storage.read(layout.mask(USER, "img", 1)) == new.token.encode()
    status = b.read_status(USER, "img")
    assert (status["state"], status["attempts"], status["owner"]) == ("done", 2, "w1")


def test_a_dead_holders_write_landing_after_the_take_over_is_swept_by_the_completion(
    storage: Storage, clock: Clock
) -> None:
    """Found by a CI run on a loaded machine: a killed worker's PUT was still in S3's hands and landed
    after the next holder had cleared its staging folder, so it stayed for good."""
    add_job(storage)
    a, b, c = workers(storage, clock, 3)
    first = a.claim(USER, "img")
    clock.advance(LEASE + 1)
    second = b.claim(USER, "img")
    storage.write(first.staging + "mask1.png", b"late")  # lands after the take-over cleared it
    clock.advance(LEASE + 1)
    third = c.claim(USER, "img")
    storage.write(second.staging + "mask1.png", b"late too")
    assert c.complete(third, stage(c, third))
    assert not list(storage.list(layout.output_dir(USER, "staging")))
    assert storage.read(layout.mask(USER, "img", 1)) != b"late"


def test_only_one_of_several_takers_wins_a_stale_claim(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    takers = workers(storage, clock, 6)
    assert takers[0].claim(USER, "img") is not None
    clock.advance(LEASE + 1)
    with ThreadPoolExecutor(5) as pool:
        claims = list(pool.map(lambda jobs: jobs.claim(USER, "img"), takers[1:]))
    assert sum(claim is not None for claim in claims) == 1


def test_complete_publishes_staged_outputs_and_writes_the_status_last(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    recorder = Recorder(storage)
    (a,) = workers(recorder, clock, 1)  # type: ignore[arg-type]
    claim = a.claim(USER, "img")
    staged = stage(a, claim, 2)
    staged[claim.staging + "p.json"] = layout.points(USER, "img")
    storage.write(claim.staging + "p.json", b"{}")
    for final in staged.values():
        assert not storage.exists(final)  # staged outputs are invisible before complete()
    recorder.changes.clear()
    assert a.complete(claim, staged, clippings=["img_mask1_1.png"], method="sam", timings={"sam": 1.5})
    for final in staged.values():
        assert storage.exists(final)
    assert not list(storage.list(claim.staging))
    status_key = layout.status(USER, "img")
    changes = recorder.changes
    last_move = max(i for i, (op, _) in enumerate(changes) if op == "move")
    status_write = next(i for i, (_, key) in enumerate(changes) if key == status_key)
    assert changes[status_write][0] == "replace_if"  # a conditional write on the `processing` record
    assert status_write > last_move
    # After the status only the claim is released and the (now empty) staging removed.
    assert changes[status_write + 1 :] == [
        ("replace_if", layout.claim(USER, "img")),
        ("delete_prefix", claim.staging),
    ]
    status = a.read_status(USER, "img")
    assert status["state"] == "done" and status["error"] is None and status["attempts"] == 1
    assert status["clippings"] == ["img_mask1_1.png"] and status["method"] == "sam"
    assert status["timings"] == {"sam": 1.5}
    assert status["updated_at"] == "2023-11-14T22:13:20.000Z"
    assert a.claim(USER, "img") is None  # done is final


def test_complete_replaces_the_outputs_of_an_earlier_run(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    (a,) = workers(storage, clock, 1)
    old = [
        layout.mask(USER, "img", 3),
        layout.crop(USER, "img_mask3_1.png"),
        layout.crop_thumb(USER, "img_mask3_1.png"),
        layout.boxes(USER, "img", "yolo"),
    ]
    kept = [layout.thumb(USER, "img"), layout.input_file(USER, "img", ".jpg"), layout.mask(USER, "img2", 3)]
    for key in old + kept:
        storage.write(key, b"old")
    claim = a.claim(USER, "img")
    assert a.complete(claim, stage(a, claim, 1))
    assert [k for k in old if storage.exists(k)] == []
    assert all(storage.exists(k) for k in kept)


@pytest.mark.parametrize("ending", ["complete", "fail", "final failure"])
def test_a_job_whose_image_was_deleted_meanwhile_leaves_nothing_behind(
    storage: Storage, clock: Clock, ending: str
) -> None:
    """The user deletes the image (its job file first: image_files.delete) after the worker renewed its
    claim for the last time: what the worker writes then must not outlive the image (found by the soak)."""
    add_job(storage)
    storage.write(layout.input_file(USER, "img", ".jpg"), b"original")
    (a,) = workers(storage, clock, 1)
    claim = a.claim(USER, "img")
    staged = stage(a, claim, 2)
    for key in (layout.input_file(USER, "img", ".jpg"), layout.resized(USER, "img")):
        storage.delete(key)  # the delete has begun; the claim and the status are still there
    if ending == "complete":
        assert a.complete(claim, staged, clippings=["img_mask1_0.png"])
    else:
        a.fail(claim, "boom", final=ending == "final failure")
    assert [e.key for e in storage.list(f"{USER}/")] == []


def test_a_delete_during_publishing_leaves_nothing_behind(
    storage: Storage, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete races complete(): it lists the output folders before the worker's first moves and removes
    the job file, the claim and the staging folder after them. The next move finds its staged file gone,
    the worker's failure finds its claim gone, and what it had already published must go too (the full
    soak's orphans after bob's "clear all")."""
    add_job(storage)
    storage.write(layout.input_file(USER, "img", ".jpg"), b"original")
    (a,) = workers(storage, clock, 1)
    claim = a.claim(USER, "img")
    staged = stage(a, claim, 3)
    move, moves = storage.move, []

    def deleting_move(src: str, dst: str) -> None:
        moves.append(src)
        if len(moves) == 3:  # a delete that listed the output folders before the first two moves ends now
            for key in (layout.resized(USER, "img"), layout.input_file(USER, "img", ".jpg")):
                storage.delete(key)
            storage.delete(layout.claim(USER, "img"))
            storage.delete_prefix(claim.staging)
        move(src, dst)

    monkeypatch.setattr(storage, "move", deleting_move)
    with pytest.raises(NotFound):
        a.complete(claim, staged, clippings=["img_mask1_0.png"])
    assert a.fail(claim, "writing the results failed") == "lost"
    assert [e.key for e in storage.list(f"{USER}/")] == []


def test_failures_are_retried_a_bounded_number_of_times(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b = workers(storage, clock, 2, max_attempts=3)
    first = a.claim(USER, "img")
    stage(a, first)
    assert a.fail(first, "decoder error") == "queued"
    assert not list(storage.list(first.staging))
    status = a.read_status(USER, "img")
    assert (status["state"], status["attempts"], status["error"]) == ("queued", 1, "decoder error")
    second = b.claim(USER, "img")  # released: no need to wait for the lease
    assert second.attempt == 2
    assert b.fail(second, "decoder error") == "queued"
    third = a.claim(USER, "img")
    assert third.attempt == 3
    assert a.fail(third, "decoder error: truncated file") == "failed"
    status = a.read_status(USER, "img")
    assert (status["state"], status["attempts"]) == ("failed", 3)
    assert status["error"] == "decoder error: truncated file"
    assert a.claim(USER, "img") is None and b.claim(USER, "img") is None


def test_a_final_failure_is_not_retried(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    (a,) = workers(storage, clock, 1, max_attempts=3)
    claim = a.claim(USER, "img")
    assert a.fail(claim, "img.png is not an image file", final=True) == "failed"
    status = a.read_status(USER, "img")
    assert (status["state"], status["attempts"], status["error"]) == ("failed", 1, "img.png is not an image file")
    assert a.claim(USER, "img") is None


def test_a_job_that_kills_its_workers_ends_failed(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    takers = workers(storage, clock, 4, max_attempts=3)
    for attempt, jobs in enumerate(takers[:3], start=1):
        claim = jobs.claim(USER, "img")
        assert claim is not None and claim.attempt == attempt
        clock.advance(LEASE + 1)  # the worker died holding it
    assert takers[3].claim(USER, "img") is None
    status = takers[3].read_status(USER, "img")
    assert status["state"] == "failed" and status["attempts"] == 3
    assert status["error"] == "gave up after 3 attempts: the worker stopped while processing it"


def test_the_last_failure_reason_is_kept_when_a_worker_dies_after_it(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b = workers(storage, clock, 2, max_attempts=1)
    claim = a.claim(USER, "img")
    a.release(claim, error="out of memory")  # e.g. a worker that gives up on the job
    assert b.claim(USER, "img") is None
    status = b.read_status(USER, "img")
    assert (status["state"], status["attempts"]) == ("failed", 1)
    assert status["error"] == "gave up after 1 attempts: out of memory"


def test_release_uncounted_does_not_use_an_attempt(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    a, b = workers(storage, clock, 2, max_attempts=1)
    claim = a.claim(USER, "img")
    stage(a, claim)
    assert a.release(claim, counted=False)  # e.g. the worker was asked to stop
    assert not list(storage.list(claim.staging))
    again = b.claim(USER, "img")
    assert again is not None and again.attempt == 1
    assert b.complete(again, stage(b, again))


def test_a_final_status_written_by_a_dead_holder_is_respected(storage: Storage, clock: Clock) -> None:
    """A worker that wrote `done` and died before releasing its claim: nobody redoes the job."""
    add_job(storage)
    a, b = workers(storage, clock)
    claim = a.claim(USER, "img")
    a.write_status(USER, "img", "done", claim.attempt, clippings=[])
    clock.advance(LEASE + 1)
    assert b.claim(USER, "img") is None
    assert b.read_status(USER, "img")["state"] == "done"


def test_retry_queues_a_finished_job_again(storage: Storage, clock: Clock) -> None:
    key = add_job(storage)
    a, b = workers(storage, clock, 2, max_attempts=1)
    scanner = Scanner(b)
    assert scanner.pending(USER) == [("img", key)]
    claim = a.claim(USER, "img")
    assert a.fail(claim, "boom") == "failed"
    assert scanner.pending(USER) == []
    b.retry(USER, "img", key)
    status = b.read_status(USER, "img")
    assert (status["state"], status["attempts"], status["error"]) == ("queued", 0, None)
    assert storage.read(key) == b"png"
    # The same scanner (a poller that cached the job as final) sees it again.
    assert scanner.pending(USER) == [("img", key)]
    again = b.claim(USER, "img")
    assert again is not None and again.attempt == 1
    assert b.complete(again, stage(b, again))
    assert scanner.pending(USER) == []


def test_unreadable_records_do_not_block_a_job(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    (a,) = workers(storage, clock, 1)
    storage.write(layout.status(USER, "img"), b"{not json")
    storage.write(layout.claim(USER, "img"), b"[1, 2]")
    assert a.read_status(USER, "img") is None  # = queued
    claim = a.claim(USER, "img")
    assert claim is not None and claim.attempt == 1
    assert a.complete(claim, {})


def test_scanner_finds_pending_jobs(storage: Storage, clock: Clock) -> None:
    a, b = workers(storage, clock)
    for image_id in ["queued", "done", "held", "failed-once"]:
        add_job(storage, image_id)
    add_job(storage, "other", user="bob")
    storage.write(layout.resized_dir(USER) + "notes.txt", b"not a job")
    storage.write(layout.resized_dir(USER) + "bad..name.png", b"not a job")
    storage.write(layout.model("vit_b.pth"), b"weights")
    storage.write(layout.system("secret"), b"key")
    done = a.claim(USER, "done")
    assert a.complete(done, {})
    assert a.claim(USER, "held") is not None
    once = a.claim(USER, "failed-once")
    assert a.fail(once, "boom") == "queued"
    scanner = Scanner(b)
    assert scanner.users() == ["alice", "bob"]
    assert sorted(scanner.pending(USER)) == [(i, layout.resized(USER, i)) for i in ["failed-once", "held", "queued"]]
    assert scanner.pending("bob") == [("other", layout.resized("bob", "other"))]


def test_status_records_are_json_with_the_contract_fields(storage: Storage, clock: Clock) -> None:
    (a,) = workers(storage, clock, 1)
    a.write_status(USER, "img", "queued", 0)
    record = json.loads(storage.read(layout.status(USER, "img")))
    assert record == {
        "state": "queued",
        "attempts": 0,
        "error": None,
        "updated_at": "2023-11-14T22:13:20.000Z",
        "clippings": [],
    }


class CountingStorage(FileStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)


def test_scanner_reads_a_final_status_once(tmp_path: Path, clock: Clock) -> None:
    storage = CountingStorage(tmp_path)
    (a,) = workers(storage, clock, 1)
    for image_id in ["finished", "waiting"]:
        path = storage.local_path(add_job(storage, image_id))
        os.utime(path, (time.time() - 60, time.time() - 60))  # an old job file
    assert a.complete(a.claim(USER, "finished"), {})
    scanner = Scanner(a)
    assert scanner.pending(USER) == [("waiting", layout.resized(USER, "waiting"))]
    storage.reads.clear()
    assert scanner.pending(USER) == [("waiting", layout.resized(USER, "waiting"))]
    assert storage.reads == [layout.status(USER, "waiting")]


def test_hand_made_clippings_are_kept_by_every_pass_and_a_retry_redoes_only_the_automatic_ones(
    storage: Storage, clock: Clock
) -> None:
    """A cut saved before Server2's pass (server1/editor.py writes the record through change_status): the
    photo stays a job, the pass adds its clippings after the hand-made ones, and a retry replaces only its own."""
    key = add_job(storage)
    hand, earlier = "img_mask1001_0.png", "img_mask1000_0.png"  # a cut, touched up once (undo restores earlier)
    for name in (hand, earlier):
        storage.write(layout.crop(USER, name), b"by hand")
        storage.write(layout.crop_thumb(USER, name), b"by hand")
    (a,) = workers(storage, clock, 1)
    a.change_status(
        USER,
        "img",
        lambda old: {
            "state": "queued",
            "attempts": 0,
            "error": None,
            "clippings": [hand],
            "hand_made": [hand],
            "clipping_boxes": {hand: [1, 2, 3, 4], earlier: [1, 2, 3, 5]},
            "edits": {hand: earlier},
        },
    )
    assert Scanner(a).pending(USER) == [("img", key)]  # still Server2's job
    for attempt in (1, 2):
        claim = a.claim(USER, "img")
        assert a.read_status(USER, "img")["clippings"] == [hand]  # shown while processing too
        automatic = layout.crop_name("img", attempt, 0)
        staged = {
            claim.staging + "c": layout.crop(USER, automatic),
            claim.staging + "t": layout.crop_thumb(USER, automatic),
        }
        for src in staged:
            storage.write(src, claim.token.encode())
        assert a.complete(claim, staged, clippings=[automatic], clipping_boxes={automatic: [0, 0, 9, 9]})
        record = a.read_status(USER, "img")
        assert record["state"] == "done" and record["clippings"] == [hand, automatic]
        assert record["hand_made"] == [hand] and record["edits"] == {hand: earlier}
        assert record["clipping_boxes"] == {automatic: [0, 0, 9, 9], hand: [1, 2, 3, 4], earlier: [1, 2, 3, 5]}
        crops = sorted(e.name for e in storage.list(layout.output_dir(USER, "crops")))
        assert crops == sorted([earlier, hand, automatic])  # the previous pass's clipping is gone
        assert storage.exists(layout.crop_thumb(USER, hand)) and storage.exists(layout.crop_thumb(USER, earlier))
        a.retry(USER, "img", key)
        assert a.read_status(USER, "img")["clippings"] == [hand]


def test_a_status_change_applies_again_after_a_concurrent_write(storage: Storage, clock: Clock) -> None:
    add_job(storage)
    (a,) = workers(storage, clock, 1)
    a.write_status(USER, "img", "done", 1, clippings=["x"])
    seen: list[list[str]] = []

    def add(record: dict | None) -> dict:
        seen.append(list(record["clippings"]))
        if len(seen) == 1:  # another writer gets in between this read and its write
            a.write_status(USER, "img", "done", 1, clippings=["x", "y"])
        return {**record, "clippings": [*record["clippings"], "z"]}

    assert a.change_status(USER, "img", add)["clippings"] == ["x", "y", "z"]
    assert seen == [["x"], ["x", "y"]]
    attempts = itertools.count(2)  # every write different: a filesystem's version is the content's hash
    with pytest.raises(StatusConflict):
        a.change_status(USER, "img", lambda record: a.write_status(USER, "img", "done", next(attempts)) and record)
