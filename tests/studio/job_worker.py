"""A small worker that runs the real job protocol, for the contention and crash tests.

Imported by the tests (worker threads) and run as a script (worker processes):

    python tests/studio/job_worker.py ROOT LOG_DIR NAME [--threads N] [--lease S] ...

Each worker appends one line per event to its own log file, written with a single
O_APPEND write so that a SIGKILL never leaves half a line:

    claim <user> <id> <token>    after claim() succeeded
    done <user> <id> <token>     after complete() returned True
    lost <user> <id> <token>     after complete() returned False

A job's outputs carry the claim token, so the tests can tell which claim published them.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

from studio import layout
from studio.jobs import Claim, Jobs, Scanner
from studio.storage import Storage, open_storage


class Log:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def event(self, kind: str, claim: Claim) -> None:
        os.write(self.fd, f"{kind} {claim.user} {claim.image_id} {claim.token}\n".encode())


def expected_outputs(user: str, image_id: str) -> list[str]:
    """The final keys a job done by this worker has: a mask and its clipping."""
    return [layout.mask(user, image_id, 1), layout.crop(user, layout.crop_name(image_id, 1, 1))]


def _pause(seconds: float, rng: random.Random) -> None:
    if seconds:
        time.sleep(rng.uniform(0, seconds))


def process(jobs: Jobs, claim: Claim, pause: float, rng: random.Random) -> bool:
    """Stage the outputs, then publish them with complete(); the token is the content."""
    jobs.storage.read(layout.resized(claim.user, claim.image_id))
    staged: dict[str, str] = {}
    for final in expected_outputs(claim.user, claim.image_id):
        staging_key = claim.staging + final.rsplit("/", 1)[1]
        jobs.storage.write(staging_key, claim.token.encode())
        staged[staging_key] = final
        _pause(pause, rng)
    crops = [layout.crop_name(claim.image_id, 1, 1)]
    return jobs.complete(claim, staged, clippings=crops, method="test", token=claim.token)


def run(
    storage: Storage,
    name: str,
    log_path: Path,
    lease: float = 60.0,
    max_attempts: int = 3,
    batch: int = 1,
    pause: float = 0.0,
    deadline: float = 600.0,  # generous: a loaded CI machine is slow, and the test ends when the work does
    seed: int = 0,
) -> None:
    """Claim and finish jobs until none is pending (held ones included) or the deadline passes.
    The order of claims and the pauses come from random.Random(f"{seed}-{name}")."""
    rng = random.Random(f"{seed}-{name}")
    jobs = Jobs(storage, name, lease_seconds=lease, max_attempts=max_attempts)
    scanner = Scanner(jobs)
    log = Log(log_path)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        pending = [(user, image_id) for user in scanner.users() for image_id, _ in scanner.pending(user)]
        if not pending:
            return
        rng.shuffle(pending)
        claims: list[Claim] = []
        claimed = 0
        for n, (user, image_id) in enumerate(pending, start=1):
            claim = jobs.claim(user, image_id)
            if claim is not None:
                log.event("claim", claim)
                claims.append(claim)
                claimed += 1
            if claims and (len(claims) == batch or n == len(pending)):
                for claim in claims:  # held together: a kill may catch several claims at once
                    log.event("done" if process(jobs, claim, pause, rng) else "lost", claim)
                claims = []
        if not claimed:
            time.sleep(0.2)  # everything left is held by others: wait for them or their leases
    raise TimeoutError(f"worker {name} still saw pending jobs after {deadline}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--go", type=Path, help="wait for this file before starting (a start line)")
    args = parser.parse_args()

    storage = open_storage(args.root)  # one client, shared by the threads (boto3 clients are thread-safe)
    (args.log_dir / f"{args.name}.ready").touch()
    while args.go and not args.go.exists():
        time.sleep(0.01)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        name = f"{args.name}-{i}"
        try:
            log_path = args.log_dir / f"{name}.log"
            run(storage, name, log_path, args.lease, args.max_attempts, args.batch, args.pause, seed=args.seed)
        except BaseException as e:
            errors.append(e)
            raise

    threads = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
