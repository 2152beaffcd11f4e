"""`make soak` / `python -m bench.soak [--short] [--seed N]`: a day of two users, compressed, with faults.

Everything is real and started here: moto's S3 server (behind a small TCP proxy that can refuse
connections), Server1 under gunicorn as its image runs it, Server2 by its `serve` entry point with the
real weights (../shared/realworld/weights: YOLO11n, MobileSAM, U2-Netp), and in a second round Server1
on a real s3fs mount of the same bucket. The load is Locust's (bench/soak_load.py, a process of its
own). Faults come at points of progress (photos finished, a job being processed), never at a time:
Server2 SIGKILLed mid-job and restarted, Server1 SIGTERMed and restarted, S3 refused for a while, the
s3fs mount dropped and remounted. Afterwards everything is counted from storage (the bucket is
versioned: every status record ever written is kept) and from the servers' answers, never from logs.
docs/architecture.md ("Storage layout", "Job protocol") is what is checked.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import boto3
import numpy as np
import pillow_heif
import psutil
import skimage.data
from PIL import Image

from harness import REPO
from harness.aws import MotoServer, RefusingProxy
from harness.corpus import hostile
from harness.mounts import BucketMount, mount_bucket, unmount
from harness.realworld import REAL_MODELS_ENV, REAL_WEIGHTS, REALWORLD
from harness.server1 import Server
from harness.server2 import Server2, kill_hard
from studio import layout

pillow_heif.register_heif_opener()

RESULTS = REPO / "bench" / "results"
FORMATS = ((".jpg", "JPEG", {"quality": 90}), (".png", "PNG", {}), (".webp", "WEBP", {"quality": 90}),
           (".heic", "HEIF", {"quality": 80}))  # fmt: skip
# Refused by content, each with its own reason (harness/corpus.py).
CORRUPT = ("truncated-0.5-photo.jpg", "empty.jpg", "truncated-0.9-photo.png", "text.jpg", "truncated-0.5-photo.heic",
           "bad-crc.png", "truncated-0.5-photo.webp", "bomb-20000x20000.png", "truncated-0.9-photo.jpg",
           "zero-width.png")  # fmt: skip
FINAL = ("done", "failed")
RSS_LIMIT_MB = 200
RSS_WINDOW = 10  # Server2's RSS at either end of its measure: the lowest of this many samples (see sample_rss)
STALL_SECONDS = 600  # no request answered and no photo finished for this long: the run is stuck


@dataclass
class Plan:
    """What one soak does. Fault points are shares of round 1's photos that have finished."""

    seed: int
    photos: int  # valid uploads over both rounds (duplicates included)
    duplicates: int
    corrupt: int
    sam_photos: int  # alice's first photos go through SAM (the editor needs its embedding), the rest the matte
    deletes: int  # alice's photos deleted once they are being processed
    cuts: int  # editor cuts under load
    idle_photos: int  # uploaded one at a time on the idle server, for the idle figures
    idle_samples: int  # idle listings and cuts
    burst: int  # uploads per burst (4 at a time)
    max_mp: float
    outage_seconds: float
    server2_kills: int = 2
    warmup_jobs: int = 10  # a Server2 process's memory is measured from its 10th job on (see sample_rss)
    round2_share: float = 0.3  # of the photos, uploaded with Server1 on the s3fs mount
    browsers_per_user: int = 5
    concurrency: int = 4
    faults_at: dict[str, float] = field(
        default_factory=lambda: {"kill-1": 0.15, "outage": 0.3, "restart": 0.45, "kill-2": 0.6, "mount-drop": 0.3}
    )

    @classmethod
    def full(cls, seed: int) -> Plan:
        return cls(seed, photos=300, duplicates=12, corrupt=10, sam_photos=8, deletes=8, cuts=12, idle_photos=3,
                   idle_samples=20, burst=24, max_mp=12, outage_seconds=30)  # fmt: skip

    @classmethod
    def short(cls, seed: int) -> Plan:
        return cls(seed, photos=8, duplicates=1, corrupt=2, sam_photos=0, deletes=1, cuts=0, idle_photos=1,
                   idle_samples=3, burst=4, max_mp=2, outage_seconds=3, server2_kills=1, warmup_jobs=2,
                   browsers_per_user=2)  # fmt: skip


# -- the files ---------------------------------------------------------------------------
def _sources() -> list[Image.Image]:
    photos = sorted(p for p in (REALWORLD / "photos").glob("*") if p.suffix in (".jpg", ".png"))
    out = [Image.open(p).convert("RGB") for p in photos]
    return out + [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.chelsea())]


def photo_mp(rng: random.Random, max_mp: float) -> float:
    """A photo's size in megapixels: 0.3-2 MP four times in five, else 2 MP to max_mp."""
    return rng.choice([rng.uniform(0.3, 2.0)] * 8 + [rng.uniform(2.0, max_mp)] * 2)


def encode_photo(source: Image.Image, mp: float, n: int) -> tuple[str, bytes]:
    """Photo n: source scaled to mp megapixels, in the n-th of FORMATS; (file name, bytes)."""
    scale = (mp * 1e6 / (source.width * source.height)) ** 0.5
    size = (max(16, round(source.width * scale)), max(16, round(source.height * scale)))
    ext, fmt, options = FORMATS[n % len(FORMATS)]
    out = io.BytesIO()
    source.resize(size, Image.Resampling.BILINEAR).save(out, fmt, **options)
    return f"p{n:03d}{ext}", out.getvalue()


def make_files(plan: Plan, work: Path) -> dict:
    """The upload files under work/files and the plan's rounds: bursts of items {n, user, file, name, kind}."""
    rng = random.Random(plan.seed)
    sources = _sources()
    folder = work / "files"
    folder.mkdir(parents=True, exist_ok=True)
    items: list[dict] = []

    def photo(n: int, user: str) -> dict:
        mp = photo_mp(rng, plan.max_mp)
        name, data = encode_photo(sources[n % len(sources)], mp, n)
        (folder / name).write_bytes(data)
        return {"n": n, "user": user, "file": f"files/{name}", "name": name, "kind": "photo", "mp": round(mp, 2)}

    idle = [photo(n, "alice") for n in range(plan.idle_photos)]
    n = plan.idle_photos
    for k in range(plan.photos - plan.duplicates - plan.idle_photos):
        user = "alice" if k % 2 == 0 else "bob"
        items.append(photo(n, user))
        n += 1
    for _ in range(plan.duplicates):
        twin = dict(items[rng.randrange(len(items))], n=n, kind="duplicate")
        items.insert(rng.randrange(len(items) + 1), twin)
        n += 1
    corpus = hostile()
    for k, name in enumerate(CORRUPT[: plan.corrupt]):
        (folder / f"c{k}-{name}").write_bytes(corpus[name])
        item = {"n": n, "user": "bob" if k % 2 else "alice", "file": f"files/c{k}-{name}", "name": name}
        items.insert(rng.randrange(len(items) + 1), {**item, "kind": "corrupt"})
        n += 1
    # Deletes among alice's later photos (her first ones go through SAM, for the editor).
    alice = [i for i in items if i["user"] == "alice" and i["kind"] == "photo"]
    for item in rng.sample(alice[max(0, plan.sam_photos - plan.idle_photos) :], plan.deletes):
        item["delete"] = True
    split = round(len(items) * (1 - plan.round2_share))
    rounds = []
    for round_items in (items[:split], items[split:]):
        bursts = [round_items[i : i + plan.burst] for i in range(0, len(round_items), plan.burst)]
        rounds.append({"bursts": bursts})
    rounds[0]["clear_after_burst"] = len(rounds[0]["bursts"]) // 2
    return {**asdict(plan), "idle": idle, "rounds": rounds}


# -- watching storage (directly, not through the proxy) ---------------------------------------------
class Bucket:
    def __init__(self, url: str, name: str, prefix: str = "shared/") -> None:
        self.s3 = boto3.client("s3", endpoint_url=url)
        self.name = name
        self.prefix = prefix
        self._records: dict[str, tuple[str, dict | None]] = {}  # key -> (etag, record)

    def keys(self, under: str) -> dict[str, str]:
        """{key below the root: etag}."""
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=self.prefix + under):
            out.update({o["Key"].removeprefix(self.prefix): o["ETag"] for o in page.get("Contents", [])})
        return out

    def statuses(self, user: str) -> dict[str, dict | None]:
        """{image id: status record}, each read again only when its ETag changed."""
        out = {}
        for key, etag in self.keys(layout.output_dir(user, "status")).items():
            cached = self._records.get(key)
            if cached is None or cached[0] != etag:
                try:
                    body = self.s3.get_object(Bucket=self.name, Key=self.prefix + key)["Body"].read()
                    cached = (etag, json.loads(body))
                except (self.s3.exceptions.NoSuchKey, ValueError):
                    continue
                self._records[key] = cached
            out[key.rsplit("/", 1)[1].removesuffix(".json")] = cached[1]
        return out

    def history(self, user: str) -> dict[str, list[dict]]:
        """{image id: every status record ever written, oldest first} from the bucket's versions."""
        out: dict[str, list[tuple[datetime, dict]]] = {}
        folder = self.prefix + layout.output_dir(user, "status")
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.name, Prefix=folder):
            for version in page.get("Versions", []):
                body = self.s3.get_object(Bucket=self.name, Key=version["Key"], VersionId=version["VersionId"])
                with contextlib.suppress(ValueError):
                    image_id = version["Key"].rsplit("/", 1)[1].removesuffix(".json")
                    out.setdefault(image_id, []).append((version["LastModified"], json.loads(body["Body"].read())))
        return {i: [r for _, r in sorted(v, key=lambda t: t[0])] for i, v in out.items()}


def live_ids(keys: dict[str, str], user: str) -> set[str]:
    """Images that exist: an original or a job file (docs/architecture.md "Storage layout"); folder
    markers and hidden temporary names are no image (nor listed by any backend)."""
    out = set()
    for folder in (layout.input_dir(user), layout.resized_dir(user)):
        names = [k.removeprefix(folder) for k in keys if k.startswith(folder)]
        out |= {layout.split_ext(n)[0] for n in names if n and "/" not in n and not n.startswith(".")}
    return out


def orphans(keys: dict[str, str], user: str) -> list[str]:
    """Keys under the user's prefix that belong to no live image and are no documented record."""
    live = live_ids(keys, user)
    documented = {layout.settings(user), layout.canvas(user)}
    found = []
    for key in keys:
        if key in documented or key.endswith("/"):
            continue  # folder markers (an s3fs mkdir) are listed by no backend
        folder = next((f for f in layout.image_folders(user) if key.startswith(f)), None)
        name = key.removeprefix(folder) if folder else ""
        stem = name.removeprefix(layout.CLIPPING_THUMB)
        candidates = {stem.split("_mask")[0], layout.split_ext(stem)[0], stem.rsplit("-", 1)[0]}
        if not folder or not any(c in live and layout.owned_by(c, folder, name) for c in candidates):
            found.append(key)  # staging left behind after every job ended is an orphan too
    return found


def rss_mb(proc: subprocess.Popen) -> float:
    """The server's memory: its process and every child (gunicorn master and worker)."""
    root = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


# -- the run --------------------------------------------------------------------------------------
class Soak:
    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan = plan
        self.work = work
        self.faults: list[dict] = []
        self.moto = MotoServer()
        self.server1: Server | None = None
        self.servers2: list[Server2] = []
        self.mount: BucketMount | None = None
        # Per server process: RSS once it has worked (Server1: the round's load began; Server2: its first
        # job finished) and at its last sample. Growth is measured within one process.
        self.rss: dict[str, dict[str, float]] = {}
        self.rss_samples: dict[str, list[float]] = {}  # Server2's, per process

    # servers
    def start_server2(self) -> Server2:
        env = {"SHARED_DIR": self.root, "MODELS_DIR": str(self.models), "LEASE_SECONDS": "10",
               "POLL_SECONDS": "0.5", **REAL_MODELS_ENV}  # fmt: skip
        server = Server2(self.work, env)
        self.servers2.append(server)
        server.wait_ready(timeout=600)
        return server

    def start_server1(self, shared: str) -> Server:
        self.server1 = Server(shared, gunicorn=True, EVENTS_POLL_SECONDS="1").start()
        return self.server1

    def history(self, round_no: int) -> list[dict]:
        path = self.work / f"history-{round_no}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def processing(self, server: Server2) -> bool:
        return any(
            r and r["state"] == "processing" and r.get("owner") == server.worker_id
            for user in ("alice", "bob")
            for r in self.bucket.statuses(user).values()
        )

    def note(self, fault: str, stage: str, **fields: object) -> None:
        """stage: injected, survived (the part is back and serving), never reached."""
        self.faults.append({"fault": fault, "stage": stage, "t": time.time(), **fields})
        print(f"  fault {fault}: {stage} {fields}", flush=True)

    def run(self) -> dict:
        self.models = self.work / "models"
        self.models.mkdir(exist_ok=True)
        for name in REAL_WEIGHTS:
            link = self.models / name
            if not link.exists():
                link.symlink_to(REALWORLD / "weights" / name)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        try:  # whatever ends the run, a kill included (main), stop() leaves no process behind
            self.moto.start()
            self.bucket_name = f"soak-{uuid.uuid4().hex[:8]}"
            self.bucket = Bucket(self.moto.url, self.bucket_name)
            self.bucket.s3.create_bucket(Bucket=self.bucket_name)
            self.bucket.s3.put_bucket_versioning(Bucket=self.bucket_name, VersioningConfiguration={"Status": "Enabled"})
            self.proxy = RefusingProxy(self.moto.port)
            self.proxy.resume()
            os.environ["AWS_ENDPOINT_URL"] = self.proxy.url  # both servers reach S3 through the proxy
            self.root = f"s3://{self.bucket_name}/shared"
            self.start_server2()
            self.start_server1(self.root)
            self.round(0)
            self.server1.stop()
            self.mount = mount_bucket("s3fs", self.moto, self.bucket_name, self.work / "mnt", self.work)
            self.start_server1(str(self.mount.point / "shared"))
            self.round(1)
            return self.count()
        finally:
            self.stop()
            os.environ.pop("AWS_ENDPOINT_URL", None)
            if endpoint:
                os.environ["AWS_ENDPOINT_URL"] = endpoint

    def stop(self) -> None:
        if self.server1 and self.server1.proc and self.server1.proc.poll() is None:
            self.server1.stop()
        for server in self.servers2:
            if server.proc.poll() is None:
                kill_hard(server)
        if self.mount:
            unmount(self.mount.point, self.mount.proc)
        self.moto.stop()

    def round(self, round_no: int) -> None:
        print(f"round {round_no + 1}: Server1 on {self.server1.env['SHARED_DIR']}", flush=True)
        plan = json.loads((self.work / "plan.json").read_text())
        plan["rounds"][round_no]["server1"] = self.server1.url
        (self.work / "plan.json").write_text(json.dumps(plan))
        total = sum(len(b) for b in plan["rounds"][round_no]["bursts"]) + (len(plan["idle"]) if round_no == 0 else 0)
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.soak_load", str(self.work), str(round_no)],
            cwd=REPO,
            stdout=open(self.work / f"locust-{round_no}.log", "wb"),  # noqa: SIM115 - the process keeps it
            stderr=subprocess.STDOUT,
        )
        # Progress: images seen final in this round (a clear or delete does not take it back). The round's
        # last burst is held until the faults are done, so a kill always finds a job to interrupt.
        total = sum(i["kind"] != "corrupt" for b in plan["rounds"][round_no]["bursts"][:-1] for i in b)
        total += len(plan["idle"]) if round_no == 0 else 0
        seen = self.finished()
        before = set(seen)
        pending = ["mount-drop"] if round_no else [f"kill-{k + 1}" for k in range(self.plan.server2_kills)]
        pending += [] if round_no else ["outage", "restart"]
        pending.sort(key=lambda f: self.plan.faults_at[f])
        release = self.work / f"faults-{round_no}"
        progress, changed = None, time.monotonic()
        try:
            while True:
                log = self.work / f"locust-{round_no}.log"
                assert load.poll() is None, f"the load stopped: {log.read_text()[-3000:]}"
                events = self.history(round_no)
                phases = {e["name"] for e in events if e["ev"] == "phase"}
                assert "error" not in phases, f"the load failed: {[e for e in events if e.get('name') == 'error']}"
                if (len(events), len(seen)) != progress:
                    progress, changed = (len(events), len(seen)), time.monotonic()
                assert time.monotonic() - changed < STALL_SECONDS, f"nothing happened for {STALL_SECONDS} s"
                seen |= self.finished()
                self.sample_rss("load-start" in phases)
                done = len(seen - before)
                due = pending and "load-start" in phases and done >= self.plan.faults_at[pending[0]] * total
                if due and self.inject(pending[0], round_no):
                    pending.pop(0)
                if not release.exists() and (not pending or ("holding" in phases and self.quiet())):
                    release.touch()  # the faults are done, or nothing is left to do before the last burst
                if "uploads-done" in phases and self.quiet() and self.reconnected(events):
                    for fault in pending:
                        self.note(fault, "never reached")
                    break
                time.sleep(0.5)
            (self.work / f"stop-{round_no}").touch()
            load.wait(120)
        finally:
            if load.poll() is None:
                load.kill()

    def sample_rss(self, loaded: bool) -> None:
        server2 = self.servers2[-1]
        jobs = sum(
            1
            for user in ("alice", "bob")
            for r in self.bucket.statuses(user).values()
            if r and r["state"] in FINAL and r.get("owner") == server2.worker_id
        )
        # Server2's first jobs allocate what stays (onnxruntime's arena, model buffers): growth counts from there.
        warm = jobs >= self.plan.warmup_jobs
        for name, proc, ready in (("server1", self.server1.proc, loaded), ("server2", server2.proc, warm)):
            if ready and proc.poll() is None:
                with contextlib.suppress(psutil.Error):  # a gunicorn worker may be on its way out
                    now = round(rss_mb(proc), 1)
                    key = f"{name} pid {proc.pid}"
                    if name == "server1":
                        self.rss.setdefault(key, {"start": now})["end"] = now
                        continue
                    # Server2 hands back what each job freed (server2.memory): between jobs its RSS is what
                    # stays, during one that plus the job's own (up to 1.3 GB for SAM on a 12 MP photo,
                    # bench.memory). A sample's moment is chance, so each end is the lowest of RSS_WINDOW
                    # samples: what a leak would raise.
                    samples = self.rss_samples.setdefault(key, [])
                    samples.append(now)
                    self.rss[key] = {"start": min(samples[:RSS_WINDOW]), "end": min(samples[-RSS_WINDOW:])}

    def reconnected(self, events: list[dict]) -> bool:
        """Every live-update client of the round has connected again since Server1's restart."""
        restart = next((f["t"] for f in self.faults if f["fault"] == "restart" and f["stage"] == "injected"), None)
        connects = [e for e in events if e["ev"] == "sse_connect"]
        after = {e["client"] for e in connects if restart is None or e["t"] > restart}
        return after == {e["client"] for e in connects}

    def finished(self) -> set[tuple[str, str]]:
        statuses = {user: self.bucket.statuses(user) for user in ("alice", "bob")}
        return {(user, i) for user, found in statuses.items() for i, r in found.items() if r and r["state"] in FINAL}

    def quiet(self) -> bool:
        """Every image in storage has its final status."""
        for user in ("alice", "bob"):
            statuses = self.bucket.statuses(user)
            live = live_ids(self.bucket.keys(f"{user}/"), user)
            if any((statuses.get(i) or {}).get("state") not in FINAL for i in live):
                return False
        return True

    def inject(self, fault: str, round_no: int) -> bool:
        """The fault, if its moment has come; False to look again."""
        if fault.startswith("kill"):
            server = self.servers2[-1]
            if not self.processing(server):
                return False
            kill_hard(server)
            self.note(fault, "injected", what="Server2 SIGKILLed mid-job", worker=server.worker_id)
            started = time.monotonic()
            self.start_server2()
            self.note(fault, "survived", what="Server2 restarted", seconds=round(time.monotonic() - started, 1))
        elif fault == "outage":
            self.proxy.refuse()
            self.note(fault, "injected", what="S3 refuses connections", seconds=self.plan.outage_seconds)
            deadline = time.monotonic() + self.plan.outage_seconds
            while time.monotonic() < deadline:  # the outage's length is the fault itself
                time.sleep(0.2)
            self.proxy.resume()
            self.note(fault, "survived", what="S3 back")
        elif fault == "restart":
            assert self.server1 is not None
            self.server1.stop()
            # Noted once the old Server1 has exited: a live-update client connecting from now on has
            # reconnected to the new one (often before start() below has seen it answer).
            self.note(fault, "injected", what="Server1 SIGTERMed")
            self.server1.start()
            self.note(fault, "survived", what="Server1 serving again")
        elif fault == "mount-drop":
            assert self.mount is not None
            refused = len([e for e in self.history(round_no) if e["ev"] == "retry"])
            unmount(self.mount.point)
            self.note(fault, "injected", what="s3fs mount dropped (fusermount -u)")
            # Down until Server1 has refused clients twice for it (they retry), or a minute at most.
            deadline = time.monotonic() + 60
            while len([e for e in self.history(round_no) if e["ev"] == "retry"]) < refused + 2:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.mount = mount_bucket("s3fs", self.moto, self.bucket_name, self.mount.point, self.work)
            self.note(fault, "survived", what="s3fs remounted")
        return True

    # -- the count --------------------------------------------------------------------------------
    def count(self) -> dict:
        events = self.history(0) + self.history(1)
        uploads = [e for e in events if e["ev"] == "upload"]
        accepted = {i: e for e in uploads if e["kind"] != "corrupt" for i in e["ids"]}
        # A DELETE refused halfway (503: storage went away) and repeated finds nothing left: 404.
        deleted = {e["id"] for e in events if e["ev"] == "delete" and (e["status"] == 200 or e["tries"] > 1)}
        clear = next((e for e in events if e["ev"] == "clear"), None)
        cleared = {i for i, e in accepted.items() if clear and e["user"] == "bob" and e["ended"] < clear["started"]}
        racing = {
            i
            for i, e in accepted.items()
            if clear and e["user"] == "bob" and e["ended"] >= clear["started"] and e["started"] <= clear["ended"]
        }
        gone = deleted | cleared
        problems: dict[str, list[str]] = {}

        def problem(what: str, text: str) -> None:
            problems.setdefault(what, []).append(text)

        for e in uploads:
            if e["kind"] != "corrupt" and (e["status"] != 200 or not e["ids"]):
                problem("refused valid upload", f"{e['n']}: {e['status']} {e['error']}")
            if e["kind"] == "corrupt" and not (400 <= e["status"] < 500 and e["error"] and not e["ids"]):
                problem("corrupt not refused clearly", f"{e['n']}: {e['status']} {e['error']!r} {e['ids']}")
        albums = {}
        for user in ("alice", "bob"):
            session = self.server1.login(user)
            albums[user] = {
                i["id"]: i for i in session.get(self.server1.url + "/api/images", timeout=60).json()["images"]
            }
        keys = {user: self.bucket.keys(f"{user}/") for user in ("alice", "bob")}
        histories = {user: self.bucket.history(user) for user in ("alice", "bob")}
        methods: dict[str, int] = {}
        attempts: dict[int, int] = {}
        for image_id, e in accepted.items():
            user, image = e["user"], albums[e["user"]].get(image_id)
            if image_id in gone:
                if image is not None or image_id in live_ids(keys[user], user):
                    problem("deleted reappeared", f"{user}/{image_id}")
                continue
            if image_id in racing:
                continue  # uploaded while the clear ran: either way is right
            status = (image or {}).get("status", {})
            if status.get("state") == "done" and image["clippings"]:
                pass
            elif status.get("state") == "failed" and status.get("error"):
                problem("failed (readable)", f"{user}/{image_id}: {status['error']}")
            else:
                problem("lost", f"{user}/{image_id}: {status or 'not in the album'}")
        for user in ("alice", "bob"):
            unknown = live_ids(keys[user], user) - set(accepted)
            for image_id in sorted(unknown):
                problem("stored but never accepted", f"{user}/{image_id}")
            for key in orphans(keys[user], user):
                problem("orphan", key)
            for image_id, records in histories[user].items():
                finals = {
                    json.dumps([r.get("owner"), r.get("timings"), r.get("error")], sort_keys=True)
                    for r in records
                    if r.get("state") in FINAL
                }
                if len(finals) > 1:
                    problem("processed twice", f"{user}/{image_id}: {len(finals)} completions")
                last = records[-1]
                if last.get("state") in FINAL and image_id in live_ids(keys[user], user):
                    methods[last.get("method") or last["state"]] = (
                        methods.get(last.get("method") or last["state"], 0) + 1
                    )
                    attempts[last.get("attempts", 0)] = attempts.get(last.get("attempts", 0), 0) + 1
        if clear and not any(k == layout.settings("bob") for k in keys["bob"]):
            problem("clear removed the settings", "bob")
        # Sessions and live updates.
        for e in events:
            if e["ev"] == "auth_lost":
                problem("session lost", f"round {e['round'] + 1}: {e['path']} {e['status']}")
        restart = next((f["t"] for f in self.faults if f["fault"] == "restart" and f["stage"] == "injected"), None)
        clients = {e["client"] for e in events if e["ev"] == "sse_connect" and e["round"] == 0}
        reconnected = {
            e["client"] for e in events if e["ev"] == "sse_connect" and e["round"] == 0 and restart and e["t"] > restart
        }
        for c in sorted(clients - reconnected):
            problem("SSE client not reconnected", f"client {c}")
        return {
            "events": events,
            "accepted": len(accepted),
            "deleted": len(deleted),
            "cleared": len(cleared),
            "clear_racing": len(racing),
            "corrupt": len([e for e in uploads if e["kind"] == "corrupt"]),
            "methods": methods,
            "attempts": attempts,
            "sse_clients": len(clients),
            "sse_reconnected": len(reconnected),
            "problems": problems,
        }


# -- figures ------------------------------------------------------------------------------------
def figures(plan: Plan, soak: Soak, counted: dict, seconds: float) -> dict:
    stats = {}
    for round_no in (0, 1):
        path = soak.work / f"stats-{round_no}.json"
        stats[round_no] = json.loads(path.read_text()) if path.exists() else {}
    events = counted.pop("events")
    load_start = min(e["t"] for e in events if e["ev"] == "phase" and e["name"] == "load-start")
    load_end = max(e["t"] for e in events if e["ev"] == "phase" and e["name"] == "stop")
    finished = sum(counted["methods"].values())
    problems = counted["problems"]
    growth = {name: round(r["end"] - r["start"], 1) for name, r in soak.rss.items()}
    injected, survived, unreached = ([f["fault"] for f in soak.faults if f["stage"] == stage]
                                     for stage in ("injected", "survived", "never reached"))  # fmt: skip
    if unreached:
        problems["fault never reached"] = unreached
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "plan": asdict(plan),
        "models": REAL_MODELS_ENV,
        "seconds": round(seconds, 1),
        "photos_per_minute": round(finished / max(1e-9, (load_end - load_start) / 60), 2),
        "latency_ms": {
            route: {"idle": stats[0].get(f"idle: {route}"), "load": stats[0].get(route), "round2": stats[1].get(route)}
            for route in ("/upload", "/api/images", "/cut")
        },
        "lost": len(problems.get("lost", [])),
        "processed_twice": len(problems.get("processed twice", [])),
        "orphans": len(problems.get("orphan", [])),
        "rss_mb": soak.rss,
        "rss_growth_mb": growth,
        "faults": soak.faults,
        "faults_injected": len(injected),
        "faults_survived": len(survived),
        **counted,
    }
    failing = {k: v for k, v in problems.items() if k != "failed (readable)"}
    result["passed"] = (
        not failing and growth and all(g < RSS_LIMIT_MB for g in growth.values()) and len(injected) == len(survived) > 0
    )
    return result


def report(result: dict) -> None:
    print(f"\nsoak {result['date']}: {result['seconds']} s, load average {result['machine']['load_avg']}")
    print(f"  models: {result['models']}; finished by method: {result['methods']}; attempts: {result['attempts']}")
    print(f"  photos a minute: {result['photos_per_minute']}")
    print(f"  {'route':<14} {'idle p50/p95/p99 ms':>24} {'under load p50/p95/p99 ms':>28}")
    for route, by in result["latency_ms"].items():
        cells = [
            "/".join(str(round(s[f"p{p}"])) for p in (50, 95, 99)) + f" (n={s['requests']})" if s else "-"
            for s in (by["idle"], by["load"])
        ]
        print(f"  {route:<14} {cells[0]:>24} {cells[1]:>28}")
    print(f"  accepted {result['accepted']}, corrupt refused {result['corrupt']}, deleted {result['deleted']}, "
          f"cleared {result['cleared']} (+{result['clear_racing']} racing the clear)")  # fmt: skip
    print(f"  lost {result['lost']}, processed twice {result['processed_twice']}, orphans {result['orphans']}")
    print(f"  RSS MB: {result['rss_mb']} growth {result['rss_growth_mb']}")
    print(f"  faults injected {result['faults_injected']}, survived {result['faults_survived']}; "
          f"SSE clients {result['sse_clients']}, reconnected {result['sse_reconnected']}")  # fmt: skip
    for what, items in result["problems"].items():
        print(f"  {what}: {len(items)}: {items[:5]}")
    print("  PASSED" if result["passed"] else "  FAILED", flush=True)


def run(plan: Plan, work: Path | None = None, out: Path | None = None) -> dict:
    work = work or RESULTS / f"soak-work-{plan.seed}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {plan.seed} (replay with --seed {plan.seed}), work in {work}", flush=True)
    (work / "plan.json").write_text(json.dumps(make_files(plan, work)))
    started = time.monotonic()
    soak = Soak(plan, work)
    counted = soak.run()
    result = figures(plan, soak, counted, time.monotonic() - started)
    report(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the tiny plan of the test suite")
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**32))
    args = parser.parse_args()
    # A kill (SIGTERM) ends the run as Ctrl-C does: Soak.run's cleanup stops the servers, moto and the mount.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = (Plan.short if args.short else Plan.full)(args.seed)
    result = run(plan, out=RESULTS / ("soak-short.json" if args.short else "soak.json"))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
