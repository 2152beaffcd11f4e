"""The resized/ watcher: moto for SageMaker, a recording server for sagemaker-runtime / Server2."""

from __future__ import annotations

from collections import Counter

from studio import layout
from studio.jobs import Jobs
from studio.storage import open_storage
from tests.lifecycle.support import desired, lifecycle, run_for


def add_job(storage, user: str, image_id: str) -> None:
    """A job dropped into resized/ by any means (no upload, no status record)."""
    storage.write(layout.resized(user, image_id), b"\x89PNG not decoded by the watcher")


def test_new_file_brings_the_gpu_back_and_is_invoked_exactly_once(
    storage, clock, tmp_path, sagemaker, make_endpoint, runtime_at
):
    endpoint = make_endpoint(0)
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint, scale_down_after=300)
    run_for(life, clock, 30)
    assert desired(sagemaker, endpoint) == 0

    add_job(storage, "alice", "cat")
    life.notify_work()
    life.tick()
    assert desired(sagemaker, endpoint) == 1
    assert life.worker_status() == "starting"
    run_for(life, clock, 60)
    assert runtime_at.jobs() == [("alice", "cat")]  # once, though it stayed pending for many polls
    call = runtime_at.calls[0]
    assert call["path"] == f"/endpoints/{endpoint}/invocations"
    assert call["headers"]["Content-Type"] == "application/json"
    assert life.worker_status() == "busy"
    assert storage.exists(layout.invocation("alice", "cat"))

    Jobs(storage, owner="server2").write_status("alice", "cat", "done", 1)
    run_for(life, clock, 10)
    assert life.worker_status() == "ready"
    assert not storage.exists(layout.invocation("alice", "cat"))  # finished: its record is gone
    run_for(life, clock, 300)
    assert desired(sagemaker, endpoint) == 0
    assert runtime_at.jobs() == [("alice", "cat")]


def test_a_restarted_server1_does_not_invoke_again_but_a_retried_job_is(
    storage, clock, tmp_path, sagemaker, make_endpoint, runtime_at
):
    endpoint = make_endpoint(1)
    add_job(storage, "alice", "a1")
    add_job(storage, "bob", "b1")
    first = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint)
    run_for(first, clock, 20)
    assert sorted(runtime_at.jobs()) == [("alice", "a1"), ("bob", "b1")]
    first.lease.release()

    second = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint)
    run_for(second, clock, 60)
    assert len(runtime_at.calls) == 2

    jobs = Jobs(storage, owner="server2")
    jobs.write_status("bob", "b1", "failed", 3, error="poison")
    jobs.retry("bob", "b1", layout.resized("bob", "b1"))  # the user's retry re-queues the job
    run_for(second, clock, 20)
    assert sorted(runtime_at.jobs()) == [("alice", "a1"), ("bob", "b1"), ("bob", "b1")]


def test_a_failed_invocation_is_made_again_later(storage, clock, tmp_path, sagemaker, make_endpoint, runtime_at):
    endpoint = make_endpoint(1)
    runtime_at.fail = 3  # the first try and boto3's 2 retries all fail
    add_job(storage, "alice", "x")
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=endpoint)
    life.tick()
    life.watcher.settle()
    assert runtime_at.failed == 3 and runtime_at.calls == []
    assert "cannot invoke endpoint" in life.health()["invocations"]["error"]
    run_for(life, clock, 120)
    assert runtime_at.jobs() == [("alice", "x")]
    assert life.health()["invocations"]["error"] is None


def test_inference_component_name_goes_with_the_invocation(storage, clock, tmp_path, runtime_at):
    # moto has no inference components, so only the invocation side is exercised here.
    from server1.lifecycle.watcher import SageMakerInvoker

    SageMakerInvoker("sam-studio", "sam-studio-ic").invoke("alice", "x")
    assert runtime_at.calls[0]["headers"]["X-Amzn-SageMaker-Inference-Component"] == "sam-studio-ic"
    assert runtime_at.calls[0]["body"] == {"user": "alice", "image": "x"}


def test_local_mode_posts_to_inference_url_and_never_scales(storage, clock, tmp_path, recorder):
    life = lifecycle(storage, clock, tmp_path, inference_url=recorder.url)
    assert life.scaler is None
    add_job(storage, "bob", "img-1.2")
    run_for(life, clock, 30)
    assert recorder.calls == [
        {"path": "/invocations", "headers": recorder.calls[0]["headers"], "body": {"user": "bob", "image": "img-1.2"}}
    ]
    assert life.worker_status() == "busy"
    assert life.health()["mode"] == "local"


def test_local_mode_without_url_leaves_jobs_to_server2s_poller(storage, clock, tmp_path, recorder):
    life = lifecycle(storage, clock, tmp_path)
    add_job(storage, "bob", "b")
    run_for(life, clock, 30)
    assert recorder.calls == []
    assert life.worker_status() == "busy"
    Jobs(storage, owner="server2").write_status("bob", "b", "done", 1)
    run_for(life, clock, 10)
    assert life.worker_status() == "ready"


def test_idle_polls_cost_one_listing_per_user_on_s3(s3_root, clock, tmp_path, sagemaker, make_endpoint):
    storage = open_storage(s3_root)
    jobs = Jobs(storage, owner="server2")
    for user in ("alice", "bob"):
        for n in range(3):
            add_job(storage, user, f"old{n}")
            jobs.write_status(user, f"old{n}", "done", 1)
    calls: list[str] = []
    storage.client.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    life = lifecycle(storage, clock, tmp_path, sagemaker_client=sagemaker, endpoint=make_endpoint(0))
    run_for(life, clock, 60)  # learns that every job is final
    calls.clear()
    polls = 0
    end = clock.now + 3600
    while clock.now < end:
        life.lease.hold()
        clock.advance(life.tick())
        polls += 1
    per_user_poll = calls.count("ListObjectsV2") / (2 * polls)
    counts = Counter(calls)
    print(f"\nidle hour on S3: {polls} polls, {len(calls)} storage requests {dict(counts)}")
    assert per_user_poll == 1
    # Besides the listings: the lease renewed every 20 s, and a few status reads where the
    # Scanner's final-cache missed (seen now and then on moto in the first minutes).
    assert set(counts) <= {"ListObjectsV2", "PutObject", "GetObject"}
    assert counts["PutObject"] <= 3600 / 20 + 1
    assert len(calls) <= 1000
