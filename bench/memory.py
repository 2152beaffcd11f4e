"""Server2's memory over many jobs (issue #31): where a process's growth goes, and whether it stops.

`python -m bench.memory [--jobs 56] [--seed N] [--configs untrimmed,product,...] [--sequence cycle|soak]
[--storage folder|s3] [--parallel 2] [--json FILE]`

The photos are made as the soak makes them (bench.soak: the labelled photos and skimage's, scaled, in its
four formats) and prepared as Server1's ingest prepares them (original, work copy, thumbnail), in this
process. Each configuration then runs in a fresh child process: Server2's Service as its gunicorn worker runs
it, without the HTTP part (the real models, REAL_MODELS_ENV: YOLO11n, MobileSAM, U2-Netp on the CPU with
OMP_NUM_THREADS=1 as the soak's Server2 has; the editor's ONNX models ensured; the poller finds each job, the
dispatcher's thread runs server2.worker.Worker.run and then server2.memory.release), on a folder or
(--storage s3) a bucket on a moto server. The photos are published one at a time as Server1 publishes them,
and deleted once done. After each job: the process's RSS (psutil), its peak during the job (polled every
20 ms), and glibc's own count (mallinfo2: bytes in use, bytes free but kept in the arenas, bytes in mmapped
blocks).

Sequences: "cycle" (default) is one cycle of 7 jobs in an order drawn from the seed, repeated: bob's photos
of every size of SIZES_MP by the matte path, and one of alice's (SAM_MP) by SAM with the soak's fast settings
(SAM is the slow path: ~10 s a job on an idle core; the models see the work copy, at most 1024 px whatever
the photo's size, so its largest photo stands for all). A leak grows cycle after cycle; an allocator's
high-water mark stops once the cycle's heaviest job has been seen. "soak" draws the sizes as the soak does
(0.3-2 MP four times in five, else up to 12 MP), alice's first 8 photos by SAM, then the matte path.

Configurations (CONFIGS): product (server2 as it is: malloc_trim after each job); untrimmed (without it, as
before 2026-12-07); arena-max-2 (untrimmed, env MALLOC_ARENA_MAX=2); no-ort-arena (untrimmed, the rembg
session with SessionOptions.enable_cpu_mem_arena=False); product+no-ort-arena; tracemalloc (untrimmed, with
tracemalloc from the 10th job on: the Python allocations made after it and alive at the end, largest first).
Slow: about an hour for 56 jobs x 4 configurations on a loaded 2-core machine (--parallel 2 runs two at
once; about 2 GB each). README "Soak" quotes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

SIZES_MP = (0.3, 0.8, 1.5, 3.0, 6.0, 12.0)
SAM_MP = (12.0,)
USERS = {"alice": {"mode": "sam", "points_per_side": 8, "crop_n_layers": 0}, "bob": {"mode": "matte"}}
SOAK_SAM_PHOTOS = 8  # alice's first photos go through SAM in the soak (bench.soak.Plan.full)
WARMUP_JOBS = 10  # the soak measures a Server2 process from its 10th finished job on
CONFIGS: dict[str, dict] = {  # server2 as it is: malloc_trim after each job (server2.memory), the ORT arena on
    "untrimmed": {"flags": ["--no-trim"]},  # as before 2026-12-07
    "product": {},
    "arena-max-2": {"env": {"MALLOC_ARENA_MAX": "2"}, "flags": ["--no-trim"]},
    "no-ort-arena": {"flags": ["--no-trim", "--no-ort-arena"]},
    "product+no-ort-arena": {"flags": ["--no-ort-arena"]},
    "tracemalloc": {"flags": ["--no-trim", "--tracemalloc"]},
}
DEFAULT_CONFIGS = "untrimmed,product,arena-max-2,no-ort-arena"
MODELS_CACHE = Path(tempfile.gettempdir()) / "sam-studio-memory-models"  # weight links + the editor's ONNX
MB = 2**20


# -- the photos (parent process) ----------------------------------------------------------------
def plan_jobs(sequence: str, jobs: int, seed: int) -> list[dict]:
    """[{n, user, mp, source}]: which photo each job is."""
    rng = random.Random(seed)
    if sequence == "cycle":
        cycle = [{"user": "bob", "mp": mp} for mp in SIZES_MP] + [{"user": "alice", "mp": mp} for mp in SAM_MP]
        rng.shuffle(cycle)
        for k, entry in enumerate(cycle):
            entry["source"] = k  # one photo per cycle entry, made once and uploaded again each cycle
        return [{"n": n, **cycle[n % len(cycle)]} for n in range(jobs)]
    from bench.soak import photo_mp

    return [{"n": n, "user": ("alice", "bob")[n % 2], "mp": round(photo_mp(rng, 12.0), 2), "source": n}
            for n in range(jobs)]  # fmt: skip


def prepare_photos(plan: list[dict], folder: Path) -> None:
    """Each distinct photo of the plan encoded as the soak does, then prepared as Server1's ingest does:
    folder/<source>.{original,resized,thumb} and <source>.json (its extension and size)."""
    from bench.soak import _sources, encode_photo
    from server1.ingest import prepare

    sources = _sources()
    for job in plan:
        k = job["source"]
        if (folder / f"{k}.json").exists():
            continue
        name, data = encode_photo(sources[k % len(sources)], job["mp"], k)
        prepared = prepare(data)
        for part in ("original", "resized", "thumb"):
            (folder / f"{k}.{part}").write_bytes(getattr(prepared, part))
        meta = {"name": name, "ext": prepared.ext, "width": prepared.width, "height": prepared.height}
        (folder / f"{k}.json").write_text(json.dumps(meta))


# -- one configuration (child process) -----------------------------------------------------------
class Malloc:
    """glibc's allocator's own count: mallinfo2, over every arena."""

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip

    def __init__(self) -> None:
        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.mallinfo2.restype = Malloc.Info

    def info(self) -> dict[str, float]:
        """MB: in use (malloc'd and not freed), free (kept in the arenas), mmapped (large blocks, in use)."""
        i = self.libc.mallinfo2()
        return {"in_use": i.uordblks / MB, "free": i.fordblks / MB, "mmapped": i.hblkhd / MB}


def models_folder() -> Path:
    """MODELS_CACHE: links to the real weights. main() exports MobileSAM's editor models beside them once (as
    BAKE_WEIGHTS=1 bakes them): each configuration's start copies them, as a baked image's Server2 does."""
    from harness.realworld import REAL_WEIGHTS, REALWORLD

    MODELS_CACHE.mkdir(exist_ok=True)
    for name in REAL_WEIGHTS:
        link, target = MODELS_CACHE / name, REALWORLD / "weights" / name
        if not target.is_file():
            sys.exit(f"{target} is missing: the real weights are needed (REALWORLD_DIR)")
        if not link.exists():
            link.symlink_to(target)
    return MODELS_CACHE


class Peak:
    """The highest RSS since the last reset, polled every 20 ms in a thread of its own."""

    def __init__(self, proc: Any) -> None:
        self.proc, self.peak, self.stop = proc, 0, threading.Event()
        threading.Thread(target=self._poll, name="peak-rss", daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def reset(self) -> float:
        """The peak in MB since the last reset."""
        peak, self.peak = self.peak, self.proc.memory_info().rss
        return max(peak, self.peak) / MB


def child(args: argparse.Namespace) -> None:
    """One configuration: Server2's Service (server2.service, as its gunicorn worker runs it, without HTTP)
    on args.shared, the photos published there one at a time as Server1 publishes them."""
    from harness.realworld import REAL_MODELS_ENV

    os.environ.update(REAL_MODELS_ENV, SHARED_DIR=args.shared, MODELS_DIR=str(models_folder()), DEVICE="cpu",
                      LEASE_SECONDS="10", POLL_SECONDS="0.2", WORKER_ID="bench-memory")  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the soak's Server2 (harness.server2)
    import psutil

    from server2 import config, memory, models
    from server2.service import Service
    from studio import image_files, settings
    from studio.jobs import FINAL, Jobs
    from studio.storage import open_storage

    malloc, proc = Malloc(), psutil.Process()
    if args.no_ort_arena:
        import onnxruntime as ort
        from rembg import new_session

        def load(self: models.MatteModel, folder: Path, device: str) -> models.MatteModel:
            options = ort.SessionOptions()
            options.enable_cpu_mem_arena = False
            with models._rembg_env(folder):
                self.session = new_session(self.name, sess_opts=options, providers=models.onnx_providers(device))
            return self

        models.MatteModel.load = load  # type: ignore[method-assign]
    # The dispatcher's release after each job (server2.memory), timed, or (--no-trim) skipped as before it was.
    release, released, trims = memory.release, threading.Event(), []

    def timed_release() -> bool:
        started = time.perf_counter()
        done = False if args.no_trim else release()
        trims.append(time.perf_counter() - started)
        released.set()
        return done

    memory.release = timed_release
    service = Service(config.load())
    service.start()
    while service.state != "ready":
        if service.state == "error":
            sys.exit(f"Server2 did not start: {service.reason}")
        time.sleep(0.2)
    storage = open_storage(args.shared)  # Server1's side: uploads, settings, deletes
    jobs = Jobs(storage, "bench")
    for user, prefs in USERS.items():
        settings.save(storage, user, prefs)
    plan = json.loads((args.photos / "plan.json").read_text())
    loaded = {"rss": proc.memory_info().rss / MB, **malloc.info()}
    samples: list[dict] = []
    top: list[str] = []
    peak, sam_done, snapshot = Peak(proc), 0, None
    for job in plan:
        k, user = job["source"], job["user"]
        if args.sequence == "soak" and user == "alice" and sam_done == SOAK_SAM_PHOTOS:
            settings.save(storage, user, {"mode": "matte"})  # as the soak's load does after 8
        meta = json.loads((args.photos / f"{k}.json").read_text())
        parts = [(args.photos / f"{k}.{part}").read_bytes() for part in ("thumb", "original", "resized")]
        image_id = f"p{job['n']:03d}"
        peak.reset()
        released.clear()
        started = time.perf_counter()
        image_files.publish(storage, user, lambda: image_id, parts[0], parts[1], meta["ext"], parts[2])  # noqa: B023
        del parts
        status: dict = {}
        while status.get("state") not in FINAL:  # the poller finds the job; the dispatcher runs it, then releases
            if not released.wait(600):
                sys.exit(f"job {image_id}: not finished in 600 s")
            released.clear()
            status = jobs.read_status(user, image_id) or {}
        seconds = time.perf_counter() - started
        if status["state"] != "done":
            sys.exit(f"job {image_id}: {status}")
        sam_done += status.get("method") == "sam" and user == "alice"
        samples.append({**job, "method": status.get("method"), "pixels": meta["width"] * meta["height"],
                        "format": meta["ext"], "seconds": round(seconds, 2), "trim_ms": trims[-1] * 1000,
                        "peak": peak.reset(), "rss": proc.memory_info().rss / MB, **malloc.info()})  # fmt: skip
        image_files.delete(storage, user, image_id)  # the soak's clear; keeps the storage small
        last = samples[-1]
        line = f"job {job['n'] + 1:3d} {last['method']:5s} {job['mp']:5.1f} MP {meta['ext']:5s} {seconds:5.1f} s"
        print(
            f"  {args.name}: {line}  RSS {last['rss']:7.1f} MB, peak {last['peak']:7.1f}", file=sys.stderr, flush=True
        )
        if args.tracemalloc and len(samples) == WARMUP_JOBS:
            tracemalloc.start(8)
            snapshot = tracemalloc.take_snapshot()
    if snapshot is not None:
        end = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        top.extend(str(stat) for stat in end.compare_to(snapshot, "traceback")[:8])
        top.extend("\n    ".join(stat.traceback.format()) for stat in end.compare_to(snapshot, "traceback")[:3])
    service.stop()
    peak.stop.set()
    args.out.write_text(json.dumps({"loaded": loaded, "samples": samples, "tracemalloc": top}))


# -- the comparison (parent process) -----------------------------------------------------------
def summary(name: str, result: dict, cycle: int) -> dict:
    rss = [s["rss"] for s in result["samples"]]
    n = len(rss)
    warm = rss[min(WARMUP_JOBS, n) - 1]
    half = n // 2
    xs = list(range(half, n))
    mean_x, mean_y = sum(xs) / len(xs), sum(rss[half:]) / len(xs)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, rss[half:], strict=True)) / spread if spread else 0
    last = result["samples"][-1]
    biggest = max(range(n), key=lambda i: (result["samples"][i]["pixels"], -i))
    return {
        "config": name,
        "loaded": round(result["loaded"]["rss"]),
        "job 1": round(rss[0]),
        f"job {WARMUP_JOBS}": round(warm),
        f"job {min(2 * cycle, n)}": round(rss[min(2 * cycle, n) - 1]),
        "end": round(rss[-1]),
        "max": round(max(rss)),
        f"growth {WARMUP_JOBS}->end": round(rss[-1] - warm),
        f"growth {min(2 * cycle, n)}->end": round(rss[-1] - rss[min(2 * cycle, n) - 1]),
        "MB/job 2nd half": round(slope, 2),
        "peak during a job": round(max(s["peak"] for s in result["samples"])),
        "release ms": round(sum(s["trim_ms"] for s in result["samples"]) / n),
        "end: in use/free/mmapped": f"{last['in_use']:.0f}/{last['free']:.0f}/{last['mmapped']:.0f}",
        "first largest photo": f"job {biggest + 1}",
        "s/job": round(sum(s["seconds"] for s in result["samples"]) / n, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=56)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sequence", choices=("cycle", "soak"), default="cycle")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--parallel", type=int, default=1, help="configurations run at once")
    parser.add_argument(
        "--storage",
        choices=("folder", "s3"),
        default="folder",
        help="Server2's shared storage: a folder, or a bucket on a moto server (as in the soak)",
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    # the child's
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shared", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-trim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-ort-arena", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    names = args.configs.split(",")
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {unknown}; known: {', '.join(CONFIGS)}")
    print(
        f"bench.memory: seed {seed}, {args.jobs} jobs, sequence {args.sequence}, storage {args.storage}, "
        f"configurations {names}"
    )
    plan = plan_jobs(args.sequence, args.jobs, seed)
    cycle = len(SIZES_MP) + len(SAM_MP) if args.sequence == "cycle" else WARMUP_JOBS
    results: dict[str, dict] = {}
    from harness.aws import MotoServer, new_bucket
    from server2 import embeddings

    embeddings.export_editor_models(models_folder())  # once, here: not in the measured processes
    moto = MotoServer() if args.storage == "s3" else None
    with tempfile.TemporaryDirectory(prefix="bench-memory-photos-") as tmp, contextlib.ExitStack() as stack:
        photos = Path(tmp)
        if moto is not None:
            moto.start()
            stack.callback(moto.stop)
            os.environ["AWS_ENDPOINT_URL"] = moto.url  # the children's clients
        prepare_photos(plan, photos)
        (photos / "plan.json").write_text(json.dumps(plan))
        running: list[tuple[str, subprocess.Popen]] = []
        for k, name in enumerate(names):
            config = CONFIGS[name]
            if moto is None:
                (photos / f"{name}-shared").mkdir()
            shared = f"s3://{new_bucket(moto.url, 'memory')}/shared" if moto else str(photos / f"{name}-shared")
            command = [sys.executable, "-m", "bench.memory", "--child", "--photos", str(photos), "--out",
                       str(photos / f"{name}.json"), "--sequence", args.sequence, "--name", name, "--shared", shared,
                       *config.get("flags", [])]  # fmt: skip
            env = config.get("env", {})
            print(f"{name}: {' '.join(f'{key}={v}' for key, v in env.items())} {' '.join(command[2:])}", flush=True)
            running.append((name, subprocess.Popen(command, env={**os.environ, **env})))
            if len(running) == args.parallel or k == len(names) - 1:
                for started, proc in running:
                    if proc.wait():
                        sys.exit(f"{started}: exit status {proc.returncode}")
                    results[started] = json.loads((photos / f"{started}.json").read_text())
                running = []
    if args.json:  # before the summary: the samples are the hour's work
        args.json.write_text(json.dumps({"seed": seed, "plan": plan, "results": results}, indent=1))
    print(f"\nRSS (MB) after each job; seed {seed}")
    print("  job  path   MP   " + "".join(f"{name:>14s}" for name in names))
    for i, job in enumerate(results[names[0]]["samples"]):
        row = "".join(f"{results[name]['samples'][i]['rss']:14.0f}" for name in names)
        print(f"  {i + 1:3d}  {job['method']:5s} {job['mp']:5.1f}{row}")
    rows = [summary(name, results[name], cycle) for name in names]
    print()
    for row in rows:
        print("  " + "; ".join(f"{k} {v}" for k, v in row.items()))
    for name in names:
        if results[name]["tracemalloc"]:
            print(f"\n{name}: Python allocations made after job {WARMUP_JOBS} and alive at the end, largest first:")
            print("\n".join(f"  {line}" for line in results[name]["tracemalloc"]))
    if args.json:
        args.json.write_text(json.dumps({"seed": seed, "plan": plan, "results": results, "summary": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
