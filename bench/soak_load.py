"""The soak's load (bench/soak.py, docs/architecture.md "Routes"): Locust as a library, headless.

`python -m bench.soak_load WORK ROUND` runs one round of the plan in WORK/plan.json against the
Server1 it names, in a process of its own: Locust runs on gevent, which patches sockets, threads
and subprocesses of the whole process, so the orchestrator (bench/soak.py) stays a plain process.

Every user is a browser-like client of the real routes: it logs in through the form, sends the
CSRF token, and retries what a person would retry (a refused connection while Server1 restarts,
503 while storage is away). What happened is appended to WORK/history-ROUND.jsonl (one event per
line, with the wall time): the orchestrator counts from it and from storage, never from logs.
Locust's own statistics go to WORK/stats-ROUND_*.csv and, with the percentiles, to
WORK/stats-ROUND.json.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402 - after gevent's patching, as Locust requires
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from locust import User, constant, task  # noqa: E402
from locust.clients import HttpSession  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter  # noqa: E402

from harness.server1 import USERS, csrf_of  # noqa: E402

RETRY_SECONDS = 300.0  # how long a client keeps retrying one request through restarts and outages
RETRIED = (0, 502, 503, 504)  # 0: no answer (connection refused or reset)
# SAM's automatic generator with the fewest points: on a CPU a photo in seconds, not a minute.
FAST_SAM = {"points_per_side": 8, "crop_n_layers": 0}
MIME = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".heic": "image/heic"}


class Run:
    """The round's plan, the shared history file and the flags the users coordinate by."""

    def __init__(self, work: Path, round_no: int) -> None:
        self.work = work
        self.round = round_no
        self.plan = json.loads((work / "plan.json").read_text())
        self.config = self.plan["rounds"][round_no]
        self.url = self.config["server1"]
        self._history = open(work / f"history-{round_no}.jsonl", "a")  # noqa: SIM115 - open for the round
        self.uploads: Queue = Queue()
        self.pending_answers = 0
        self.pending_deletes = 0  # deletes not yet answered: the round ends only once each is in the history
        self.stopping = False
        self.clients = itertools.count()
        self.rng = random.Random(self.plan["seed"] + round_no)

    def log(self, event: str, **fields: object) -> None:
        self._history.write(json.dumps({"t": time.time(), "ev": event, "round": self.round, **fields}) + "\n")
        self._history.flush()

    def stop_requested(self) -> bool:
        return (self.work / f"stop-{self.round}").exists()


RUN: Run


def call(client: HttpSession, method: str, path: str, name: str, ok: tuple[int, ...] = (200,), **kwargs: object):
    """One request, retried while Server1 restarts or storage is away; each try is in the stats.
    Statuses in ok (e.g. an expected 400) count as successes."""
    deadline = time.monotonic() + RETRY_SECONDS
    for tries in itertools.count(1):
        with client.request(method, path, name=name, catch_response=True, **kwargs) as answer:
            if answer.status_code in ok:
                answer.success()
            else:
                answer.failure(f"{answer.status_code}: {(answer.text or '')[:120]}")
            if path != "/login" and (answer.status_code in (401, 403) or "/login" in (answer.url or "")):
                RUN.log("auth_lost", path=path, status=answer.status_code)
        if answer.status_code not in RETRIED or time.monotonic() > deadline:
            answer.tries = tries
            return answer
        RUN.log("retry", path=path, status=answer.status_code)
        gevent.sleep(1.0)


def login(user: str) -> HttpSession:
    """A browser session of user: the login form with its CSRF token, then the token for the API. A
    login refused by an outage (503) is done again from the form, as a person would."""
    client = HttpSession(RUN.url, request_event=ENV.events.request, user=None)
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        token = csrf_of(call(client, "GET", "/login", "/login").text)
        form = {"username": user, "password": USERS[user], "csrf_token": token}
        with client.request("POST", "/login", name="/login", data=form, catch_response=True) as answer:
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            answer.failure(f"{answer.status_code}: {(answer.text or '')[:120]}")
        RUN.log("retry", path="/login", status=answer.status_code)
        gevent.sleep(1.0)
    client.headers["X-CSRFToken"] = csrf_of(answer.text)
    return client


def album(client: HttpSession, name: str = "/api/images") -> dict[str, dict]:
    answer = call(client, "GET", "/api/images", name)
    return {image["id"]: image for image in answer.json()["images"]} if answer.status_code == 200 else {}


def upload(client: HttpSession, user: str, item: dict, name: str = "/upload") -> list[str]:
    path = RUN.work / item["file"]
    corrupt = item["kind"] == "corrupt"
    started = time.time()
    answer = call(
        client,
        "POST",
        "/upload",
        name,
        ok=(200, 400, 413, 415) if corrupt else (200,),
        files={"file": (item["name"], path.read_bytes(), MIME.get(path.suffix, "application/octet-stream"))},
    )
    try:
        body = answer.json()
    except ValueError:
        body = {}
    ids = [image["id"] for image in body.get("images", [])]
    RUN.log("upload", user=user, n=item["n"], kind=item["kind"], status=answer.status_code, ids=ids,
            error=body.get("error"), started=started, ended=time.time())  # fmt: skip
    return ids


def settings(client: HttpSession, user: str, changes: dict) -> None:
    answer = call(client, "POST", "/api/settings", "/api/settings", json=changes)
    RUN.log("settings", user=user, changes=changes, status=answer.status_code)


def cut(client: HttpSession, user: str, images: dict[str, dict], name: str) -> bool:
    """One editor cut on a done image with an embedding: a positive point in a clipping's middle."""
    for image_id, image in images.items():
        if image["status"]["state"] != "done":
            continue
        editor = call(client, "GET", f"/api/images/{image_id}/editor", "/api/images/<id>/editor")
        if editor.status_code != 200:
            continue
        found = editor.json()
        boxes = [c["box"] for c in found["clippings"] if c.get("box")]
        if not found.get("embedding") or not boxes:
            continue
        x0, y0, x1, y1 = boxes[0]
        prompt = {"points": [[(x0 + x1) / 2, (y0 + y1) / 2]], "labels": [1], "box": None}
        answer = call(client, "POST", f"/api/images/{image_id}/cut", name, ok=(200, 404, 409), json=prompt)
        RUN.log("cut", user=user, id=image_id, status=answer.status_code, idle=name.startswith("idle"))
        return answer.status_code == 200
    return False


def wait_final(client: HttpSession, ids: list[str], timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        images = album(client, "idle: /api/images (waiting)")
        if all(images.get(i, {}).get("status", {}).get("state") in ("done", "failed") for i in ids):
            return
        gevent.sleep(1.0)


def idle_phase() -> None:
    """Figures on an idle server: uploads one at a time, then listings and cuts once they are done."""
    plan = RUN.plan
    client = login("alice")
    settings(client, "alice", {"mode": "sam", **FAST_SAM} if plan["sam_photos"] else {"mode": "matte"})
    settings(login("bob"), "bob", {"mode": "matte"})
    RUN.log("phase", name="idle-start")
    ids = [i for item in plan["idle"] for i in upload(client, "alice", item, "idle: /upload")]
    wait_final(client, ids)
    for _ in range(plan["idle_samples"]):
        images = album(client, "idle: /api/images")
    cuts = sum(cut(client, "alice", images, "idle: /cut") for _ in range(plan["idle_samples"]))
    RUN.log("phase", name="idle-end", idle_ids=ids, idle_cuts=cuts)


class Browser(User):
    """An open album tab: the live-update stream held open (reconnecting as EventSource does) and
    the album polled."""

    fixed_count = 0  # set from the plan
    wait_time = constant(2.0)

    def on_start(self) -> None:
        self.index = next(RUN.clients)
        self.account = "alice" if self.index % 2 == 0 else "bob"
        self.http = login(self.account)
        gevent.spawn(self._stream)

    def _stream(self) -> None:
        while not RUN.stopping:
            events = 0
            try:
                with requests.get(
                    RUN.url + "/events", cookies=self.http.cookies, stream=True, timeout=(5, 60)
                ) as stream:
                    if stream.status_code == 200:
                        RUN.log("sse_connect", client=self.index, user=self.account)
                        for line in stream.iter_lines():
                            if RUN.stopping:
                                return
                            events += line.startswith(b"event:")
                    reason = "ended" if stream.status_code == 200 else f"status {stream.status_code}"
            except requests.RequestException as e:
                reason = type(e).__name__
            RUN.log("sse_end", client=self.index, reason=reason, events=events)
            gevent.sleep(3.0)  # the stream's `retry: 3000`

    @task
    def poll(self) -> None:
        album(self.http)


class Uploader(User):
    """One of the page's parallel uploads: takes the next file of the current burst."""

    fixed_count = 0
    wait_time = constant(0)

    def on_start(self) -> None:
        self.http = {user: login(user) for user in USERS}

    @task
    def next_upload(self) -> None:
        item = RUN.uploads.get()
        user = item["user"]
        ids = upload(self.http[user], user, item)
        if item.get("delete") and ids:
            RUN.pending_deletes += 1
            gevent.spawn(delete_while_processing, self.http[user], user, ids[0])
        RUN.pending_answers -= 1


def delete_while_processing(client: HttpSession, user: str, image_id: str) -> None:
    """Delete the image once it is being processed (or when it finished first: said so)."""
    try:
        seen = "queued"
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            seen = album(client).get(image_id, {}).get("status", {}).get("state", "gone")
            if seen != "queued":
                break
            gevent.sleep(0.3)
        answer = call(client, "DELETE", f"/api/images/{image_id}", "/api/images/<id> DELETE", ok=(200, 404))
        RUN.log("delete", user=user, id=image_id, seen=seen, status=answer.status_code, tries=answer.tries)
    finally:
        RUN.pending_deletes -= 1


class Editor(User):
    """A user cutting in the editor while the rest goes on."""

    fixed_count = 0
    wait_time = constant(3.0)

    def on_start(self) -> None:
        self.http = login("alice")
        self.cuts = 0

    @task
    def edit(self) -> None:
        if self.cuts < RUN.plan["cuts"] and cut(self.http, "alice", album(self.http, "editor: /api/images"), "/cut"):
            self.cuts += 1


class Controller(User):
    """The plan's conductor: bursts of uploads (the next once half of what was sent is final),
    alice's switch from SAM to the matte path, bob's "clear all" in the middle, the end."""

    fixed_count = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        self.http = {user: login(user) for user in USERS}

    def _finished(self, user: str) -> int:
        return sum(i["status"]["state"] in ("done", "failed") for i in album(self.http[user], "controller").values())

    def _final_share(self) -> float:
        states = [i["status"]["state"] for user in USERS for i in album(self.http[user], "controller").values()]
        return sum(s in ("done", "failed") for s in states) / max(1, len(states))

    @task
    def conduct(self) -> None:
        try:
            self._conduct()
        except Exception as e:  # Locust would run the task again: never upload the plan twice
            RUN.log("phase", name="error", error=f"{type(e).__name__}: {e}")
            RUN.stopping = True
            raise

    def _conduct(self) -> None:
        config = RUN.config
        matte = RUN.round > 0 or not RUN.plan["sam_photos"]
        for burst_no, burst in enumerate(config["bursts"]):
            if burst_no == len(config["bursts"]) - 1:
                RUN.log("phase", name="holding")  # the last burst waits for the orchestrator's faults
                while not (RUN.work / f"faults-{RUN.round}").exists():
                    gevent.sleep(0.5)
            if not matte and self._finished("alice") >= RUN.plan["sam_photos"]:
                # Enough SAM photos for the editor: the rest of alice's go through the faster matte.
                settings(self.http["alice"], "alice", {"mode": "matte"})
                matte = True
            RUN.pending_answers += len(burst)
            for item in burst:
                RUN.uploads.put(item)
            while RUN.pending_answers:
                gevent.sleep(0.2)
            RUN.log("burst", n=burst_no, size=len(burst))
            if burst_no == config.get("clear_after_burst"):
                started = time.time()
                answer = call(self.http["bob"], "POST", "/api/clear", "/api/clear")
                RUN.log("clear", user="bob", status=answer.status_code, started=started, ended=time.time(),
                        deleted=answer.json().get("deleted") if answer.status_code == 200 else None)  # fmt: skip
            while self._final_share() < 0.5:
                gevent.sleep(1.0)
        # A delete sent but not yet logged would count its photo as lost once the round stops.
        while RUN.pending_deletes:
            gevent.sleep(0.2)
        RUN.log("phase", name="uploads-done")
        while not RUN.stop_requested():
            gevent.sleep(0.5)
        RUN.log("phase", name="stop")
        RUN.stopping = True  # main() quits the runner: a user quitting it would be killed halfway
        gevent.sleep(3600)


ENV: Environment


def main() -> None:
    global RUN, ENV
    work, round_no = Path(sys.argv[1]), int(sys.argv[2])
    RUN = Run(work, round_no)
    plan = RUN.plan
    Browser.fixed_count = 2 * plan["browsers_per_user"]
    Uploader.fixed_count = plan["concurrency"]
    Editor.fixed_count = 1 if plan["cuts"] and round_no == 0 else 0
    classes = [Browser, Uploader, Editor, Controller]
    ENV = Environment(user_classes=classes, host=RUN.url)
    runner = ENV.create_local_runner()
    csv = StatsCSVFileWriter(ENV, PERCENTILES_TO_REPORT, str(work / f"stats-{round_no}"), full_history=False)
    writer = gevent.spawn(csv.stats_writer)
    idle = {}
    if round_no == 0:
        idle_phase()
        idle = figures()  # the runner's start clears the statistics
    RUN.log("phase", name="load-start")
    users = sum(c.fixed_count for c in classes)
    runner.start(users, spawn_rate=users)
    while not RUN.stopping:
        gevent.sleep(0.2)
    runner.quit()
    RUN.log("phase", name="load-end")
    writer.kill()
    csv.close_files()
    (work / f"stats-{round_no}.json").write_text(json.dumps({**idle, **figures()}, indent=1))


def figures() -> dict[str, dict]:
    """Per request name: requests, failures and the 50th, 95th and 99th percentiles in ms."""
    return {
        entry.name: {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            **{f"p{p}": entry.get_response_time_percentile(p / 100) for p in (50, 95, 99)},
        }
        for entry in ENV.stats.entries.values()
    }


if __name__ == "__main__":
    main()
