"""Server1.Dockerfile, Server2.Dockerfile and .dockerignore: hadolint, and the commands the images
run, run here from a copy of exactly what the images COPY (test_deploy_containers.py runs the images themselves)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import REPO
from harness.wait import free_port
from studio import modelfiles
from tests.deploy.dockerfiles import Dockerfile

VENV_BIN = Path(sys.executable).parent
SITE_PACKAGES = sysconfig.get_paths()["purelib"]
IMAGE_SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages"  # python:3.11-slim's
DOCKERFILES = ["Server1.Dockerfile", "Server2.Dockerfile"]
# What a booting server is given to answer, models loaded: only a bound on a wait for a condition. Seen: Server2's
# load took 175 s on a 2-core machine about twice as slow as usual, beside the suite's other workers (a 180 s
# bound failed there); pytest's own limit is 600 s a test.
BOOT_SECONDS = 480


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_clean(name: str) -> None:
    result = subprocess.run([str(VENV_BIN / "hadolint"), name], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    """Docker's rule, simplified: a path is out when it or a parent folder matches a pattern."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for pattern in dockerignore_patterns():
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/")):
                out = not keep
    return out


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".git",
        "shared",
        "tests",
        "test-artifacts",
        "bench/results",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "server1/__pycache__",
        "studio/storage/__pycache__/s3.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path)


def test_dockerignore_keeps_what_the_images_copy() -> None:
    sources = {src for name in DOCKERFILES for src, _ in Dockerfile.read(name).copies()}
    sources |= {"deploy/weights", "studio/layout.py", "server2/serve"}  # the bake mount; files inside
    assert sources >= {"studio/", "server1/", "server2/", "requirements-server1.txt", "requirements-server2.txt"}
    assert [s for s in sources if ignored(s)] == []


def test_server1_installs_only_its_own_requirements() -> None:
    df = Dockerfile.read("Server1.Dockerfile")
    assert [src for src, _ in df.copies() if src.startswith("requirements")] == ["requirements-server1.txt"]
    assert "server2/" not in [src for src, _ in df.copies()]


def test_requirements_are_installed_before_the_code_is_copied() -> None:
    for name in DOCKERFILES:
        df = Dockerfile.read(name)
        order = [rest for word, rest in df.instructions if word in ("COPY", "RUN")]
        pip = next(i for i, rest in enumerate(order) if "pip install" in rest)
        code = next(i for i, rest in enumerate(order) if rest.startswith("studio/"))
        assert pip < code, name


def test_images_run_as_a_non_root_user() -> None:
    for name in DOCKERFILES:
        assert Dockerfile.read(name).last("USER").split(":")[0] not in ("root", "0")


# ---- the images' commands, run from a copy of what the images hold ------------------------------


def image_workdir(df: Dockerfile, root: Path) -> Path:
    """The image's WORKDIR as its COPY instructions fill it, under `root`."""
    workdir = root / df.workdir().lstrip("/")
    workdir.mkdir(parents=True)
    for src, dst in df.copies():
        source = REPO / src
        target = workdir / dst
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name)
    return workdir


def image_env(df: Dockerfile, workdir: Path, bin_dir: Path, **overrides: str) -> dict[str, str]:
    """The image's ENV (its paths mapped to this machine), a clean PATH, nothing from the test run."""
    env = {}
    for key, value in df.env().items():
        value = value.replace(df.workdir(), str(workdir)).replace(IMAGE_SITE_PACKAGES, SITE_PACKAGES)
        env[key] = value
    env.update(PATH=f"{bin_dir}:{VENV_BIN}:/usr/bin:/bin", HOME=str(workdir.parent), OMP_NUM_THREADS="1")
    env.update(overrides)
    return env


def resolve(command: list[str], env: dict[str, str]) -> list[str]:
    exe = shutil.which(command[0], path=env["PATH"])
    assert exe, f"{command[0]} is not on the image's PATH"
    return [exe, *command[1:]]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def get_when_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = BOOT_SECONDS) -> requests.Response:
    """The first answer of a server still booting (slow first requests are waited for, not failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return requests.get(url, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout:g} s: {log.read_text()[-3000:]}")


def healthcheck(df: Dockerfile, env: dict[str, str], cwd: Path) -> int:
    return subprocess.run(resolve(df.exec_form("HEALTHCHECK"), env), env=env, cwd=cwd, timeout=30).returncode


def test_server1_command_serves_healthz(tmp_path: Path, processes: list[subprocess.Popen]) -> None:
    df = Dockerfile.read("Server1.Dockerfile")
    assert df.exec_form("CMD") == ["python", "-m", "server1"]
    assert not df.all("ENTRYPOINT")
    workdir = image_workdir(df, tmp_path / "image")
    port = free_port()
    env = image_env(
        df,
        workdir,
        tmp_path / "bin",
        SHARED_DIR=str(tmp_path / "mnt-s3"),  # what `docker run -v ...:/mnt/s3` provides
        PORT=str(port),
        APP_USER1="ann",
        APP_PASS1="a long test password",
        SKIP_MODEL_DOWNLOAD="1",
    )
    (tmp_path / "mnt-s3").mkdir()
    with open(tmp_path / "server1.log", "wb") as log:
        proc = subprocess.Popen(resolve(df.exec_form("CMD"), env), env=env, cwd=workdir, stdout=log, stderr=log)
    processes.append(proc)
    answer = get_when_up(f"http://127.0.0.1:{port}/healthz", proc, tmp_path / "server1.log")
    assert answer.status_code == 200, (tmp_path / "server1.log").read_text()[-3000:]
    assert answer.json()["ok"] is True
    assert healthcheck(df, env, workdir) == 0
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert healthcheck(df, env, workdir) != 0  # a dead server is reported unhealthy


@pytest.mark.parametrize("name, value", [("WEB_CONCURRENCY", "many"), ("WEB_CONCURRENCY", "0"), ("PORT", "http")])
def test_server1_command_refuses_a_bad_setting_in_one_line(tmp_path: Path, name: str, value: str) -> None:
    """gunicorn reads WEB_CONCURRENCY when it is imported, and a bare `gunicorn` answers a bad one with a
    traceback: the image's command checks every setting first."""
    df = Dockerfile.read("Server1.Dockerfile")
    workdir = image_workdir(df, tmp_path / "image")
    env = image_env(df, workdir, tmp_path / "bin", APP_USER1="ann", APP_PASS1="a long test password")
    env[name] = value
    done = subprocess.run(
        resolve(df.exec_form("CMD"), env), env=env, cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(f"server1: cannot start: {name}"), done.stderr


def test_server2_serve_answers_ping(
    tmp_path: Path, test_models_dir: Path, real_models_dir: Path, processes: list[subprocess.Popen]
) -> None:
    df = Dockerfile.read("Server2.Dockerfile")
    assert df.exec_form("CMD") == ["serve"]
    assert not df.all("ENTRYPOINT")  # SageMaker runs `docker run <image> serve`: serve must be the command
    workdir = image_workdir(df, tmp_path / "image")
    link = next(rest for rest in df.all("RUN") if "ln -s" in rest)
    target, on_path = re.search(r"ln -s (\S+) (\S+)", link).groups()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / Path(on_path).name).symlink_to(Path(target.replace(df.workdir(), str(workdir))))
    shared = tmp_path / "mnt-s3"
    shutil.copytree(test_models_dir, shared / "models")  # MODELS_DIR unset: $SHARED_DIR/models
    # No GPU and no SAM_MODEL (the image sets none): MobileSAM, the real checkpoint.
    (shared / "models" / "mobile_sam.pt").symlink_to(real_models_dir / "mobile_sam.pt")
    port = free_port()
    env = image_env(df, workdir, bin_dir, SHARED_DIR=str(shared), SAGEMAKER_BIND_TO_PORT=str(port), YOLO_OFFLINE="1")
    assert env["MODELS_DIR"] == "" and env["DEVICE"] == "auto"
    with open(tmp_path / "server2.log", "wb") as log:
        # SageMaker's working directory is not the image's code folder: serve must not care.
        proc = subprocess.Popen(resolve(["serve"], env), env=env, cwd=tmp_path, stdout=log, stderr=log)
    processes.append(proc)
    url = f"http://127.0.0.1:{port}/ping"
    status = get_when_up(url, proc, tmp_path / "server2.log").status_code
    deadline = time.monotonic() + BOOT_SECONDS
    while status != 200 and time.monotonic() < deadline:  # 503 while the models load
        time.sleep(0.5)
        status = get_when_up(url, proc, tmp_path / "server2.log").status_code
    assert status == 200, (tmp_path / "server2.log").read_text()[-3000:]
    assert healthcheck(df, env, tmp_path) == 0


# ---- Server2: CUDA libraries and baked weights ----------------------------------------------------


def test_onnxruntime_cuda_provider_finds_torchs_cuda_libraries() -> None:
    """With the image's LD_LIBRARY_PATH, every library of onnxruntime's CUDA provider resolves to
    torch's nvidia-* wheels, except libcuda.so.1: the driver, which the GPU host provides."""
    df = Dockerfile.read("Server2.Dockerfile")
    folders = df.env()["LD_LIBRARY_PATH"].replace(IMAGE_SITE_PACKAGES, SITE_PACKAGES).split(":")
    assert all(Path(f).is_dir() for f in folders), folders
    provider = Path(SITE_PACKAGES) / "onnxruntime" / "capi" / "libonnxruntime_providers_cuda.so"
    ldd = subprocess.run(
        ["ldd", str(provider)], env={"LD_LIBRARY_PATH": ":".join(folders)}, capture_output=True, text=True, check=True
    ).stdout
    missing = re.findall(r"^\s*(\S+) => not found", ldd, re.MULTILINE)
    assert missing == ["libcuda.so.1"]
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+) \(", ldd, re.MULTILINE))
    for lib in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10"):
        assert any(resolved[lib].startswith(folder) for folder in folders), (lib, resolved[lib])
    assert any((Path(f) / "libcudnn.so.9").exists() for f in folders)  # loaded by onnxruntime at run time


def test_torch_and_onnxruntime_agree_on_cuda() -> None:
    import onnxruntime
    import torch
    from onnxruntime.capi import build_and_package_info

    assert "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert torch.version.cuda.split(".")[0] == build_and_package_info.cuda_version.split(".")[0] == "13"


def bake_script(df: Dockerfile, weights: Path, models: Path) -> str:
    run = next(rest for rest in df.all("RUN") if rest.startswith("--mount=type=bind,source=deploy/weights"))
    script = run.split(" ", 1)[1]
    return script.replace("/mnt/weights", str(weights)).replace("/opt/models", str(models))


@pytest.mark.parametrize("bake", ["", "1", "0"])
def test_bake_weights_build_arg(tmp_path: Path, test_models_dir: Path, real_models_dir: Path, bake: str) -> None:
    df = Dockerfile.read("Server2.Dockerfile")
    weights, models = tmp_path / "weights", tmp_path / "opt-models"
    weights.mkdir()
    models.mkdir()
    for name in modelfiles.ModelChoice().files():  # the test weights, and MobileSAM's real file (the editor's encoder)
        (weights / name).symlink_to((test_models_dir if (test_models_dir / name).exists() else real_models_dir) / name)
    exported = ["sam-encoder-0123456789abcdef.onnx", "sam-decoder-0123456789abcdef.onnx"]  # MobileSAM's, exported
    for name in exported:
        (weights / name).write_bytes(b"onnx")
    result = subprocess.run(
        ["sh", "-c", bake_script(df, weights, models)],
        env={"BAKE_WEIGHTS": bake, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    baked = sorted(p.name for p in models.iterdir())
    if bake == "":
        assert (result.returncode, baked, df.env()["MODELS_DIR"]) == (0, [], "")
    elif bake == "1":
        assert result.returncode == 0, result.stderr
        assert baked == sorted([*modelfiles.ModelChoice().files(), *exported])
        assert df.env({"BAKE_WEIGHTS": "1"})["MODELS_DIR"] == "/opt/models"
    else:
        assert result.returncode != 0
        assert "BAKE_WEIGHTS must be 1 or empty" in result.stderr


def test_bake_weights_refuses_missing_files(tmp_path: Path) -> None:
    df = Dockerfile.read("Server2.Dockerfile")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "vit_l.pth").write_bytes(b"x")

    def bake() -> str:
        result = subprocess.run(
            ["sh", "-c", bake_script(df, tmp_path / "weights", tmp_path)],
            env={"BAKE_WEIGHTS": "1", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0
        return result.stderr

    assert "BAKE_WEIGHTS=1 needs deploy/weights/birefnet-dis.onnx" in bake()
    for name in modelfiles.ModelChoice().files():
        (tmp_path / "weights" / name).write_bytes(b"x")
    assert "BAKE_WEIGHTS=1 needs MobileSAM's exported" in bake()  # a bake without the editor's encoder
