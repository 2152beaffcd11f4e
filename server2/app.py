"""The HTTP side of Server2 (SageMaker's inference container contract): GET /ping, POST /invocations.

create_app() is the app factory gunicorn calls in its worker process ("server2.app:create_app()"):
it makes the Service from the process's Config (server2.config.load) and starts loading the
models there, once per worker; /ping answers 503 until they are loaded. Importing this module
starts nothing.

POST /invocations takes one of
  {"user": "<user>", "image": "<id>"}
  {"s3": "s3://<bucket>/<prefix>/<user>/resized/<id>.<ext>", "output": "s3://<bucket>/<prefix>/<user>/output/"}
The s3 form names a job inside SHARED_DIR (its resized/ or input/ file); "output", optional, must
be a folder holding <user>/output/, where the layout puts the results. Both forms run the same job
under the exactly-once protocol and answer {"state", "user", "image", "status" (the status
record), "error"?}: done | failed (+ "will_retry") | already-processed | in-progress | accepted
(still running after INVOCATION_WAIT_SECONDS; it finishes in the background).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import wait

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from server2 import config
from server2.config import HTTP_THREADS
from server2.idle_guard import IdleGuard
from server2.outcome import Stopping
from server2.service import Service
from studio import image_files, layout
from studio.errors import Refused
from studio.jobs import FINAL
from studio.storage import Storage, StorageError

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
USAGE = 'send {"user": "<user>", "image": "<image id>"} or {"s3": "s3://bucket/prefix/<user>/resized/<file>"}'


def parse_body(data: bytes) -> dict:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... nested too deep
        raise Refused(400, f"the body is not valid JSON; {USAGE}") from None
    if not isinstance(body, dict):
        raise Refused(400, f"the body must be a JSON object; {USAGE}")
    return body


def job_of(body: dict, storage: Storage) -> tuple[str, str]:
    """(user, image id) named by the request, either form; Refused(400) when malformed."""
    fields = {"s3", "output"} if "s3" in body else {"user", "image"}
    missing = sorted(fields - {"output"} - body.keys())
    unknown = sorted(body.keys() - fields)
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
        raise Refused(400, f"{'; '.join(problems)}; {USAGE}")
    try:
        if "s3" in body:
            return job_of_s3(body["s3"], body.get("output"), storage)
        return layout.check_user(body["user"]), layout.check_name(body["image"], "image id")
    except layout.BadName as e:
        raise Refused(400, str(e)) from None


def job_of_s3(url: object, output: object, storage: Storage) -> tuple[str, str]:
    root = storage.root if storage.root.endswith("/") else storage.root + "/"
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise Refused(400, 's3 must be a URL such as "s3://bucket/prefix/<user>/resized/<file>"')
    if not root.startswith("s3://"):
        raise Refused(400, f"this server's storage is {storage.root}, not S3; {USAGE}")
    if not url.startswith(root):
        raise Refused(400, f"{url} is outside this server's storage {root}; only its users' images can be processed")
    folder, _, name = url[len(root) :].rpartition("/")
    user = layout.check_user(folder.partition("/")[0])
    if folder + "/" not in (layout.resized_dir(user), layout.input_dir(user)):
        raise Refused(400, f"s3 must name a file in {root}{layout.resized_dir(user)} (or input/)")
    image_id = layout.check_name(layout.split_ext(name)[0], "image id")
    if output is not None:
        results = root + layout.output_dir(user, "crops")
        if not isinstance(output, str) or not results.startswith(output.rstrip("/") + "/"):
            raise Refused(400, f"output must be a folder holding {results.rsplit('/', 2)[0]}/: results go there")
    return user, image_id


def find_job(storage: Storage, user: str, image_id: str) -> str:
    """The key of the image's job file in resized/; Refused(404) when there is none."""
    job = image_files.job(storage, user, image_id)
    if job is None:
        raise Refused(
            404, f"no image {image_id!r} for user {user!r}: nothing in {layout.resized_dir(user)} by that name"
        )
    return job.key


def create_app(service: Service | None = None) -> Flask:
    """Server2's app around service; without one (gunicorn), a Service from the environment,
    started at once. The service is app.extensions["server2"] (gunicorn's hooks stop it)."""
    if service is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = config.load()
        service = Service(cfg, IdleGuard.of(cfg.deployment))
        service.start()
    app = Flask(__name__)
    app.extensions["server2"] = service
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    waiting = threading.BoundedSemaphore(HTTP_THREADS // 2)  # the other threads stay free for /ping

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response, int]:
        return jsonify(error=e.description), e.code or 500

    @app.errorhandler(Refused)
    def refused(e: Refused) -> tuple[Response, int]:
        return jsonify(error=str(e)), e.status

    @app.get("/ping")
    def ping() -> tuple[Response, int]:
        code, body = service.health()
        return jsonify(body), code

    @app.post("/invocations")
    def invocations() -> tuple[Response, int]:
        body = parse_body(request.get_data(cache=False))
        code, health = service.health()
        if code != 200 or service.jobs is None:
            return jsonify(state=health["status"], error=health["reason"]), 503
        try:
            user, image_id = job_of(body, service.jobs.storage)
            resized_key = find_job(service.jobs.storage, user, image_id)
            status = service.jobs.read_status(user, image_id)
            if status and status["state"] in FINAL:
                return jsonify(state="already-processed", user=user, image=image_id, status=status), 200
            future = service.submit(user, image_id, resized_key)
        except StorageError as e:
            log.warning("invocation: storage error: %s", e)
            return jsonify(state="error", error=f"storage unavailable: {e}"), 503
        except Stopping:
            return jsonify(state="stopping", error="the server is shutting down; try again"), 503
        if not waiting.acquire(blocking=False):
            return jsonify(state="accepted", user=user, image=image_id), 200
        try:
            done, _ = wait([future], timeout=service.config.invocation_wait)
        finally:
            waiting.release()
        if not done:
            return jsonify(state="accepted", user=user, image=image_id), 200
        outcome = future.result()
        answer = {"state": outcome.state, "user": user, "image": image_id, "status": outcome.status}
        if outcome.error:
            answer["error"] = outcome.error
        if outcome.state == "retry":
            answer.update(state="failed", will_retry=True)
        return jsonify(answer), 503 if outcome.state in ("stopped", "error") else 200

    return app
