"""The project's images as containers: built by `make images`, run by the engine it builds with (scripts/engine.sh:
docker where a docker engine answers, else podman), the way README.md "Run with Docker" runs them."""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from harness import REPO
from harness.wait import free_port, wait_for
from studio import layout
from studio.storage import open_storage
from tests.weights_mirror import Mirror, serving_mirror

ENGINE = subprocess.run([REPO / "scripts" / "engine.sh"], capture_output=True, text=True, check=True).stdout.strip()
# What this machine's sandbox needs (README.md "Run with Docker"): runc, as Debian bookworm's crun refuses its
# hybrid cgroups, and limits it allows (else the runtime tries to raise them, and the sandbox forbids it).
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
SERVER1, SERVER2 = "sam-studio-server1", "sam-studio-server2"
IMAGE_SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages"  # python:3.11-slim's, which the Dockerfiles name
BUILD_LOCK = Path("/tmp/sam-studio-images.lock")  # one build at a time on this machine (xdist workers, sessions)
STOP_SECONDS = 30  # SIGTERM to exit: ECS's and SageMaker's grace before SIGKILL
POLL = 0.25  # seconds between looks at a container: each look costs a request or a podman command


def engine(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{ENGINE} {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}")
    return result


def make_images() -> tuple[str, float]:
    """`make images` (its output, its seconds), one build at a time on this machine."""
    with open(BUILD_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        result = subprocess.run(["make", "images"], cwd=REPO, capture_output=True, text=True, timeout=3000)
        seconds = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr, seconds


def image_env(image: str) -> dict[str, str]:
    pairs = json.loads(engine("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout)
    return dict(pair.split("=", 1) for pair in pairs)


def in_image(image: str, code: str, *args: str, network: str | None = None) -> str:
    """What a Python snippet prints in a throwaway container of the image."""
    where = ["--network", network] if network else []
    return engine("run", "--rm", *RUN_FLAGS, *where, image, "python", "-c", code, *args).stdout.strip()


def base_fixes(image: str) -> dict[str, str]:
    """The environment that makes a container of `image` on the stand-in base (scripts/standin-base.sh: Debian's
    Python, packages in .../dist-packages) see what the Dockerfile's paths mean on python:3.11-slim: its
    LD_LIBRARY_PATH (Server2: torch's CUDA libraries) moved to where this image has its packages. Nothing on the
    real base. Every folder it names must exist in the image either way."""
    purelib = in_image(image, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    env = image_env(image)
    fixes = {}
    if "LD_LIBRARY_PATH" in env:
        paths = env["LD_LIBRARY_PATH"].replace(IMAGE_SITE_PACKAGES, purelib)
        missing = in_image(
            image, "import os, sys; print([p for p in sys.argv[1].split(':') if not os.path.isdir(p)])", paths
        )
        assert missing == "[]", f"{image}: LD_LIBRARY_PATH names folders it does not have: {missing}"
        if paths != env["LD_LIBRARY_PATH"]:
            fixes["LD_LIBRARY_PATH"] = paths
    return fixes


def network_gateway(network: str) -> str:
    """The host's address on a container network (its bridge exists once a container has joined it)."""
    found = json.loads(engine("network", "inspect", network).stdout)[0]
    gateways = [s["gateway"] for s in found.get("subnets", [])]  # podman
    gateways += [c["Gateway"] for c in (found.get("IPAM") or {}).get("Config") or []]  # docker
    assert gateways, found
    return gateways[0]


@contextmanager
def weights_mirror(network: str, weights: Path, names: list[str]) -> Iterator[Mirror]:
    """tests/weights_mirror.py serving these real weights to the containers on `network`, at its gateway."""
    in_image(SERVER1, "pass", network=network)  # a container has joined the network: its bridge is up
    with serving_mirror(host=network_gateway(network)) as mirror:
        for name in names:
            mirror.files[name] = (weights / name).read_bytes()
        yield mirror


@dataclass
class Container:
    name: str
    port: int  # on 127.0.0.1 of the host

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def run(cls, image: str, port: int, shared: Path, env: dict[str, str], *command: str) -> Container:
        """`ENGINE run -d` as README.md shows it: the shared folder at /mnt/s3, the port on 127.0.0.1."""
        found = cls(f"{image}-test-{uuid.uuid4().hex[:8]}", free_port())
        options = [f"--env={k}={v}" for k, v in env.items()]
        publish = f"127.0.0.1:{found.port}:{port}"
        engine(
            "run",
            "-d",
            "--name",
            found.name,
            *RUN_FLAGS,
            "-p",
            publish,
            "-v",
            f"{shared}:/mnt/s3",
            *options,
            image,
            *command,
        )
        return found

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def inspect(self, template: str) -> str:
        return engine("inspect", "--format", template, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def get(self, path: str, session: requests.Session | None = None, timeout: float = 30) -> requests.Response | None:
        """The answer, or None while nothing answers yet; fails at once when the container has exited."""
        try:
            return (session or requests).get(self.url + path, timeout=timeout)
        except requests.RequestException:
            assert self.running(), f"{self.name} exited:\n{self.logs()}"
            return None

    def wait_answer(self, path: str, status: int, timeout: float) -> requests.Response:
        found: list[requests.Response] = []

        def answered() -> bool:
            answer = self.get(path)
            found[:] = [answer] if answer is not None else []
            return answer is not None and answer.status_code == status

        try:
            wait_for(answered, f"{self.name} {path} -> {status}", timeout, POLL)
        except TimeoutError as e:
            raise AssertionError(f"{e}; last: {found and found[0].text[:500]}\n{self.logs()}") from None
        return found[0]

    def healthy(self) -> bool:
        """Healthy by the image's own HEALTHCHECK (podman runs it from systemd timers, absent here: run it now)."""
        if ENGINE == "podman":
            return engine("healthcheck", "run", self.name, check=False).returncode == 0
        return self.inspect("{{.State.Health.Status}}") == "healthy"

    def uids(self) -> str:
        """Real, effective, saved and filesystem uid of the container's main process."""
        status = engine("exec", self.name, "python", "-c", "print(open('/proc/1/status').read())").stdout
        return next(line.split(":", 1)[1].split() for line in status.splitlines() if line.startswith("Uid:"))

    def stop(self) -> tuple[float, int]:
        """SIGTERM (`ENGINE stop`, SIGKILL after STOP_SECONDS): (seconds to exit, exit code)."""
        started = time.monotonic()
        engine("stop", "--time", str(STOP_SECONDS), self.name, timeout=STOP_SECONDS + 60)
        return time.monotonic() - started, int(self.inspect("{{.State.ExitCode}}"))

    def remove(self) -> None:
        engine("rm", "--force", self.name, check=False)


def unreleased_claims(shared: Path, user: str) -> list[str]:
    """Claims in the shared folder that a server still holds."""
    storage = open_storage(str(shared))
    claims = [e.name for e in storage.list_dir(layout.output_dir(user, "claims"))[1]]
    return [c for c in claims if not storage.read_json(layout.output_dir(user, "claims") + c).get("released")]
