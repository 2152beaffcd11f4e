"""Model weights at start-up (docs/architecture.md "Endpoint lifecycle"): download what is missing from MODELS_DIR.

Each missing file streams into a hidden partial file, resumes with an HTTP Range request
after a dropped connection, is checked (size, and hash where an authoritative one is
known), then appears under its name only when complete and never over an existing file
(Storage.publish_file: each backend its own way). A file that fails leaves nothing behind and
shows in health(); the web UI does not wait for any of it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from studio import layout, settings
from studio.errors import ConfigError
from studio.modelfiles import SAM_MODELS, ModelChoice, ModelFile, required_files
from studio.storage import Storage, StorageError, open_storage

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_SECONDS = 5.0
ATTEMPTS = 5


class DownloadError(Exception):
    """A model file could not be fetched or failed its check; the message says why."""


class _Retry(Exception):
    """A transient failure: try again (resuming where possible)."""


def _hex(value: object, length: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != length or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ConfigError(f"MODEL_MANIFEST: {what} must be {length} hex digits, got {value!r}")
    return value.lower()


def read_manifest(path: str) -> list[ModelFile]:
    """MODEL_MANIFEST: {"files": [{"name", "url", "sha256" | "md5", "size"}]}; ConfigError says what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"MODEL_MANIFEST {path!r} cannot be read: {e.strerror or e}") from e
    except ValueError as e:
        raise ConfigError(f"MODEL_MANIFEST {path!r} is not valid JSON: {e}") from e
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'MODEL_MANIFEST {path!r} must be {{"files": [...]}}')
    files = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"MODEL_MANIFEST: files[{i}] must be an object")
        try:
            name = layout.check_name(entry.get("name"), "model file name")
        except layout.BadName as e:
            raise ConfigError(f"MODEL_MANIFEST: files[{i}]: {e}") from None
        url, size = entry.get("url"), entry.get("size")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"MODEL_MANIFEST: {name}: url must be an http(s) URL, got {url!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ConfigError(f"MODEL_MANIFEST: {name}: size must be a positive whole number, got {size!r}")
        sha256 = _hex(entry.get("sha256"), 64, f"{name}: sha256")
        files.append(ModelFile(name, url, size, sha256, _hex(entry.get("md5"), 32, f"{name}: md5")))
    return files


def model_files(
    manifest: str | None, base_url: str | None, choice: ModelChoice, sam_models: set[str] | frozenset[str] = frozenset()
) -> list[ModelFile]:
    """The manifest, or the files the deployment's models need (choice) plus sam_models, the SAM models users'
    settings name; every URL replaced by $MODEL_BASE_URL/<name> when set."""
    files = read_manifest(manifest) if manifest else required_files(choice, sam_models)
    if base_url:
        files = [ModelFile(f.name, f"{base_url.rstrip('/')}/{f.name}", f.size, f.sha256, f.md5) for f in files]
    return files


def settings_sam_models(storage: Storage, users: list[str]) -> set[str]:
    """The SAM models users picked in their settings (fetched besides the deployment's own)."""
    picked: set[str] = set()
    for user in users:
        try:  # no settings saved: the defaults, whose "deployment" is no file of its own
            picked.add(str(settings.load(storage, user)["sam_model"]))
        except StorageError as e:
            log.warning("model weights: cannot read %s's settings: %s", user, e)
    return picked & set(SAM_MODELS)


def _safe_url(url: str) -> str:
    """The URL without credentials or query (signed mirror URLs) for logs and /healthz."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Weights:
    """ensure() checks and fetches every file; start() runs it in a background thread, and want() adds
    files later (a SAM size picked in the settings), fetched by that thread (started again if it ended)."""

    def __init__(
        self,
        models_dir: str,
        files: list[ModelFile],
        skip_download: bool = False,
        attempts: int = ATTEMPTS,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.models_dir = models_dir
        self.files: list[ModelFile] = []
        self.skip_download = skip_download
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.session = requests.Session()
        self.state: dict[str, dict] = {}
        self._lock = threading.Lock()  # files, state and the thread: want() comes from other threads
        self._thread: threading.Thread | None = None
        self._started = False
        self._stop = threading.Event()
        self._storage: Storage | None = None
        with contextlib.suppress(ConfigError):  # reported by ensure(), which tries again
            self._open()
        self.want(files)

    def _open(self) -> Storage:
        """MODELS_DIR, opened once, at start-up where possible. Looked at afresh later, a folder on a
        bucket mount that has gone away would be taken for a plain folder and created on this host's own
        disk, under the empty mount point (where s3fs then refuses to mount again)."""
        if self._storage is None:
            self._storage = open_storage(self.models_dir)
        return self._storage

    def start(self) -> None:
        with self._lock:
            self._started = True
            self._run()

    def want(self, files: list[ModelFile]) -> None:
        """Add files not yet listed (and try a failed one again); fetched once start() was called."""
        with self._lock:
            for f in files:
                if f.name not in self.state:
                    self.files.append(f)
                elif self.state[f.name]["state"] != "failed":
                    continue
                self.state[f.name] = {"state": "unchecked", "error": None}
            if self._started:
                self._run()

    def _run(self) -> None:
        """Under the lock: a thread for the unchecked files unless one runs (it clears _thread under the lock)."""
        if self._thread is None and any(s["state"] == "unchecked" for s in self.state.values()):
            self._thread = threading.Thread(target=self.ensure, name="model-weights", daemon=True)
            self._thread.start()

    def _next(self) -> ModelFile | None:
        """The next unchecked file; None ends the thread (cleared in the same lock as want() looks)."""
        with self._lock:
            found = next((f for f in self.files if self.state[f.name]["state"] == "unchecked"), None)
            if found is None or self._stop.is_set():
                self._thread = None
                return None
            self._set(found.name, "checking")
            return found

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def ensure(self) -> None:
        try:
            storage = self._open()
        except ConfigError as e:
            while (f := self._next()) is not None:
                self._set(f.name, "failed", f"MODELS_DIR unusable: {e}")
            log.error("model weights: MODELS_DIR %s is unusable: %s", self.models_dir, e)
            return
        while (f := self._next()) is not None:
            try:
                if storage.exists(f.name):
                    self._set(f.name, "present")
                elif self.skip_download:
                    self._set(f.name, "missing", "not present and SKIP_MODEL_DOWNLOAD=1")
                    log.warning("model weights: %s is missing from %s (SKIP_MODEL_DOWNLOAD=1)", f.name, storage.root)
                else:
                    self._set(f.name, "downloading", received=0, size=f.size)
                    self._fetch(storage, f)
                    self._set(f.name, "present")
            except (DownloadError, StorageError, OSError) as e:  # OSError: the local staging folder
                self._set(f.name, "failed", str(e))
                log.error("model weights: %s", e)

    def _set(self, name: str, state: str, error: str | None = None, **progress: int | None) -> None:
        """progress: received and size (bytes; size None when unknown) while downloading."""
        self.state[name] = {"state": state, "error": error, **progress}

    def _fetch(self, storage: Storage, f: ModelFile) -> None:
        part = storage.staging_path(f.name)
        try:
            for attempt in range(1, self.attempts + 1):
                try:
                    self._download(f, part)
                    break
                except (_Retry, requests.RequestException, OSError) as e:
                    if attempt == self.attempts or self._stop.is_set():
                        raise DownloadError(f"{f.name}: download from {_safe_url(f.url)} failed: {e}") from e
                    pause = self.backoff * 2 ** (attempt - 1)
                    log.warning(
                        "model weights: %s: %s; try %d of %d in %.0f s", f.name, e, attempt + 1, self.attempts, pause
                    )
                    self.sleep(pause)
            self._check(f, part)
            self._publish(storage, f.name, part)
        finally:
            part.unlink(missing_ok=True)

    def _download(self, f: ModelFile, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.session.get(f.url, headers=headers, stream=True, timeout=(10, 60)) as answer:
            if answer.status_code == 206 and have:
                total = int(answer.headers.get("Content-Range", "").rpartition("/")[2] or 0) or None
                mode = "ab"
                log.info("model weights: %s: resuming at %.1f MB", f.name, have / 1e6)
            elif answer.status_code == 200:
                have, mode = 0, "wb"
                length = answer.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            elif answer.status_code == 416 and have:
                part.unlink()  # the partial file does not fit what the server has: start over
                raise _Retry("the server refused to resume; starting over")
            elif answer.status_code in (408, 429) or answer.status_code >= 500:
                raise _Retry(f"HTTP {answer.status_code}")
            else:
                raise DownloadError(f"{f.name}: {_safe_url(f.url)} answered HTTP {answer.status_code}")
            if f.size is not None and total is not None and total != f.size:
                raise DownloadError(f"{f.name}: the server offers {total} bytes, expected {f.size}")
            self._stream(f.name, answer, part, mode, have, total)

    def _stream(
        self, name: str, answer: requests.Response, part: Path, mode: str, have: int, total: int | None
    ) -> None:
        started, last, start_size = time.monotonic(), time.monotonic(), have
        with open(part, mode) as out:
            for chunk in answer.iter_content(CHUNK):
                if self._stop.is_set():
                    raise _Retry("stopped")
                out.write(chunk)
                have += len(chunk)
                self._set(name, "downloading", received=have, size=total)
                now = time.monotonic()
                if now - last >= PROGRESS_SECONDS:
                    last = now
                    rate = (have - start_size) / max(now - started, 1e-6) / 1e6
                    percent = f"{100 * have / total:.0f}%" if total else f"{have / 1e6:.1f} MB"
                    log.info("model weights: %s %s at %.1f MB/s", name, percent, rate)
        if total is not None and have < total:
            raise _Retry(f"connection closed after {have} of {total} bytes")
        elapsed = max(time.monotonic() - started, 1e-6)
        log.info(
            "model weights: %s downloaded (%.1f MB, %.1f MB/s)", name, have / 1e6, (have - start_size) / elapsed / 1e6
        )

    def _check(self, f: ModelFile, part: Path) -> None:
        size = part.stat().st_size
        if f.size is not None and size != f.size:
            raise DownloadError(f"{f.name}: got {size} bytes, expected {f.size}")
        for algo, expected in (("sha256", f.sha256), ("md5", f.md5)):
            if expected:
                digest = hashlib.new(algo, usedforsecurity=False)
                with open(part, "rb") as src:
                    for block in iter(functools.partial(src.read, CHUNK), b""):
                        digest.update(block)
                if digest.hexdigest() != expected:
                    raise DownloadError(f"{f.name}: {algo} {digest.hexdigest()} does not match {expected}")

    def _publish(self, storage: Storage, name: str, part: Path) -> None:
        """Make the checked file visible under its name, never replacing one that appeared meanwhile."""
        if not storage.publish_file(name, part):
            log.info("model weights: %s appeared meanwhile; keeping that one", name)

    def health(self) -> dict:
        with self._lock:  # want() may be adding files
            files = {name: dict(state) for name, state in self.state.items()}
        ok = all(s["state"] == "present" for s in files.values())
        return {"models_dir": self.models_dir, "ok": ok, "files": files}
