"""Server2 under attack and faults, on the filesystem backend: random /invocations payloads,
SIGKILL at random moments over 50 jobs, and a folder of the storage made unusable while
Server1 and Server2 both work on it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.corpus import valid
from harness.server1 import Server
from harness.server2 import Server2, children, kill_hard, process_log
from harness.wait import wait_for
from studio import layout
from studio.jobs import Jobs
from studio.storage import Storage, open_storage
from tests.hardening.stack import QUICK, Sampler, Servers2, add_jobs, done_lines, states
from tests.hardening.support import TALLY
from tests.server2.serving.support import set_settings

FUZZ = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck), max_examples=150
)


@dataclass
class Stack:
    folder: Path
    shared: Path
    storage: Storage
    servers: Servers2
    current: Server2 | None = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_models_dir: Path) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("hardening-s2")
    shared = folder / "shared"
    storage = open_storage(str(shared))
    servers = Servers2(folder, str(shared), test_models_dir, POLL_SECONDS="0.2")
    found = Stack(folder, shared, storage, servers)
    found.current = servers.start()
    yield found
    servers.stop()


# -- /invocations payloads ----------------------------------------------------------------------
def check_invocation(stack: Stack, body: bytes, jobs: set[tuple[str, str]]) -> bool:
    assert stack.current is not None
    answer = requests.post(
        stack.current.url + "/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=70
    )
    try:
        reply = answer.json()
    except ValueError:
        reply = None
    try:
        sent = json.loads(body)
    except (ValueError, RecursionError):
        sent = None
    named = isinstance(sent, dict) and set(sent) == {"user", "image"} and (sent["user"], sent["image"]) in jobs
    if named:
        held = answer.status_code == 200 and isinstance(reply, dict) and reply.get("state") == "already-processed"
    else:
        held = answer.status_code in (400, 404, 413) and isinstance(reply, dict) and bool(reply.get("error"))
    return TALLY.check("invocation payloads", f"POST /invocations {body[:60]!r}", held, f"{answer.status_code} {reply}")


@pytest.fixture(scope="module")
def finished_job(stack: Stack) -> set[tuple[str, str]]:
    set_settings(stack.storage, QUICK, user="alice")
    add_jobs(stack.storage, "alice", 1, "inv")
    wait_for(lambda: states(stack.storage, "alice", ["inv000"])["inv000"] == "done", "first job", 120)
    return {("alice", "inv000")}


NAMES = st.sampled_from(["alice", "bob", "inv000", "..", "../alice", "a/b", "", ".studio", "x" * 200]) | st.text(
    max_size=12
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | NAMES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = st.sampled_from(["user", "image", "s3", "output"]) | st.text(max_size=8)


@FUZZ
@given(payload=st.dictionaries(FIELDS, NAMES | JSON, max_size=4) | JSON)
def test_random_invocation_payloads(stack: Stack, finished_job: set, payload: object) -> None:
    assert check_invocation(stack, json.dumps(payload).encode(), finished_job)


@FUZZ
@given(body=st.binary(max_size=300))
def test_invocation_garbage_bodies(stack: Stack, finished_job: set, body: bytes) -> None:
    assert check_invocation(stack, body, finished_job)


def test_invocation_corpus(stack: Stack, finished_job: set) -> None:
    bodies = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"[" * 40000,
        b'{"a":' * 10000 + b"1" + b"}" * 10000,
        b'{"user": "alice", "image": "inv000"}',
        b'{"user": "alice", "image": "no-such-image"}',
        b'{"user": "alice", "image": "inv000", "extra": 1}',
        b'{"user": "../alice", "image": "inv000"}',
        b'{"user": "alice", "image": "../../etc/passwd"}',
        b'{"s3": "s3://bucket/shared/alice/resized/inv000.png"}',
        b'{"s3": "file:///etc/passwd"}',
        b'{"s3": 5, "output": []}',
        json.dumps({"user": "alice", "image": "x" * 70000}).encode(),  # over the 64 kB body limit
    ]
    for body in bodies:
        check_invocation(stack, body, finished_job)
    TALLY.note("invocation payloads", f"Hypothesis JSON + raw bytes, {len(bodies)} corpus bodies (deep, huge, s3)")
    TALLY.assert_held("invocation payloads", minimum=len(bodies))


# -- SIGKILL over 50 jobs ------------------------------------------------------------------------
def test_a_restart_on_the_freed_port_keeps_its_own_log_and_worker_id(tmp_path: Path) -> None:
    """A killed server's successor may be given the port it freed (it failed the test below: one file for
    both processes, the second's "done" lines counted twice)."""
    first, second = process_log(tmp_path, 5100), process_log(tmp_path, 5100)
    assert first != second and first.stem != second.stem
    assert first.read_bytes() == second.read_bytes() == b""


def _mid_job(log: str) -> bool:
    return log.rfind(": processing") > log.rfind(": done in")


@pytest.mark.slow
def test_sigkill_at_random_moments_over_50_jobs(stack: Stack) -> None:
    area = "server2 SIGKILL"
    storage = stack.storage
    set_settings(storage, QUICK, user="alice")
    set_settings(storage, {**QUICK, "mode": "sam"}, user="bob")  # seconds per job: kills land mid-job
    jobs = {"alice": add_jobs(storage, "alice", 40, "k"), "bob": add_jobs(storage, "bob", 10, "s", size=(200, 150))}

    def done() -> int:
        return sum(s == "done" for user, ids in jobs.items() for s in states(storage, user, ids).values())

    sampler = Sampler(storage, list(jobs)).start()
    rng = random.Random(20261123)
    kills = []
    try:
        for round_no in range(4):
            before = done()
            wait_for(lambda b=before: done() > b, "progress after a (re)start", 120)
            if done() == 50:
                break
            assert stack.current is not None
            if round_no == 0:  # one kill certainly mid-job: as soon as a job is in progress
                server = stack.current
                wait_for(lambda s=server: _mid_job(s.log()), "a job in progress", 120)
            else:
                time.sleep(rng.uniform(0.05, 2.0))
            log_before = stack.current.log()
            kill_hard(stack.current)
            kills.append(_mid_job(log_before))
            stack.current = stack.servers.start()
        wait_for(lambda: done() == 50, "all 50 jobs done", 240)
    finally:
        sampler.stop()
    logs = stack.servers.logs()
    counts = done_lines(logs)
    observer = Jobs(storage, "hardening-observer")
    for user, ids in jobs.items():
        for image_id in ids:
            record = observer.read_status(user, image_id)
            TALLY.check(area, f"{user}/{image_id} done", bool(record) and record["state"] == "done", str(record))
            TALLY.check(area, f"{user}/{image_id} completed once", counts.get(f"{user}/{image_id}", 0) <= 1)
            crops = {e.name for e in storage.list(layout.output_dir(user, "crops") + image_id + "_")}
            listed = set(record["clippings"]) if record else set()
            TALLY.check(area, f"{user}/{image_id} clippings exactly as recorded", crops == listed, f"{crops} {listed}")
    staging = [e.key for user in jobs for e in storage.list(layout.output_dir(user, "staging"))]
    TALLY.check(area, "no staged leftovers", not staging, str(staging[:5]))
    TALLY.check(
        area,
        f"storage sampled {sampler.rounds} times: nothing partial",
        not sampler.problems,
        str(sampler.problems[:5]),
    )
    TALLY.check(area, "at least 3 kills, one mid-job", len(kills) >= 3 and any(kills), str(kills))
    TALLY.note(area, f"{len(kills)} SIGKILLs (mid-job: {sum(kills)}) over 50 jobs; {sampler.rounds} storage samples")
    TALLY.assert_held(area, minimum=150)


# -- a storage folder made unusable ------------------------------------------------------------
def _swap_in_file(folder: Path) -> Path:
    """Replace folder by a plain file (root ignores permissions, but not this); returns where it went."""
    away = folder.with_name(folder.name + ".away")
    blocker = folder.with_name("." + folder.name + ".blocker")
    blocker.write_bytes(b"not a folder")
    os.rename(folder, away)
    os.rename(blocker, folder)
    return away


def _restore(folder: Path, away: Path) -> None:
    folder.unlink()
    try:
        os.rename(away, folder)
    except OSError:  # a worker made the folder again in between: merge
        shutil.copytree(away, folder, dirs_exist_ok=True)
        shutil.rmtree(away)


def _met_storage_error(log: str) -> bool:
    return "Not a directory" in log or "storage" in log


def test_a_storage_folder_unusable_for_a_while(stack: Stack) -> None:
    area = "storage hiccup (filesystem)"
    if stack.current is None or stack.current.proc.poll() is not None:  # whatever ran before left none
        stack.current = stack.servers.start()
    server2 = stack.current
    set_settings(stack.storage, QUICK, user="alice")
    server1 = Server(str(stack.shared), gunicorn=True).start()
    try:
        pids = (server1.proc.pid, children(server1.proc.pid), server2.proc.pid, children(server2.proc.pid))
        alice = server1.login("alice")
        photo = valid()["photo.jpg"]
        accepted = []
        for n in range(4):
            answer = alice.post(server1.url + "/upload", files={"file": (f"before-{n}.jpg", photo)}, timeout=30)
            accepted += [i["id"] for i in answer.json()["images"]]
        queued = add_jobs(stack.storage, "alice", 8, "h")  # work Server2 is busy with when storage fails
        output = stack.shared / "alice" / "output"
        mark = len(server2.log())
        away = _swap_in_file(output)
        try:
            for n in range(5):
                answer = alice.post(server1.url + "/upload", files={"file": (f"during-{n}.jpg", photo)}, timeout=60)
                reply = answer.json()
                TALLY.check(
                    area,
                    f"upload while output/ is a file -> 503 JSON #{n}",
                    answer.status_code == 503 and bool(reply.get("error")),
                    f"{answer.status_code} {reply}",
                )
            album = alice.get(server1.url + "/api/images", timeout=30)
            TALLY.check(
                area, "album answers while output/ is a file", album.status_code in (200, 503), str(album.status_code)
            )
            # output/ stays a file until Server2 has met it too (it polls every POLL_SECONDS).
            with contextlib.suppress(TimeoutError):  # counted below ("server2 logged the storage error")
                wait_for(lambda: _met_storage_error(server2.log()[mark:]), "server2 met the storage error", 60)
        finally:
            _restore(output, away)
        leftovers = [p.name for p in (stack.shared / "alice" / "input").iterdir() if p.name.startswith("during-")]
        TALLY.check(area, "refused uploads left nothing", not leftovers, str(leftovers))
        for n in range(3):
            answer = alice.post(server1.url + "/upload", files={"file": (f"after-{n}.jpg", photo)}, timeout=30)
            TALLY.check(area, f"upload after the hiccup #{n}", answer.status_code == 200, answer.text[:200])
            accepted += [i["id"] for i in answer.json().get("images", [])]
        everything = accepted + queued
        with contextlib.suppress(TimeoutError):  # counted below, one case per image
            wait_for(lambda: set(states(stack.storage, "alice", everything).values()) == {"done"}, "all done", 120)
        final = states(stack.storage, "alice", everything)
        for image_id, state in final.items():
            TALLY.check(area, f"{image_id} done after the hiccup (nothing lost)", state == "done", state)
        now = (server1.proc.pid, children(server1.proc.pid), server2.proc.pid, children(server2.proc.pid))
        TALLY.check(area, "no process restarted (no crash loop)", now == pids, f"{pids} -> {now}")
        TALLY.check(area, "server1 logged the storage error", "storage error on POST /upload" in server1.output())
        TALLY.check(area, "server2 logged the storage error", _met_storage_error(server2.log()[mark:]))
        TALLY.check(
            area, "server1 health ok again", requests.get(server1.url + "/healthz", timeout=10).status_code == 200
        )
    finally:
        server1.stop()
    TALLY.note(
        area, "alice/output replaced by a plain file (until Server2 met it) while Server1 uploads and Server2 works"
    )
    TALLY.assert_held(area, minimum=20)
