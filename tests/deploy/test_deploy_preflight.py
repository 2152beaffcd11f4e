"""deploy/preflight.py: STS and EC2 regions from a moto server, Service Quotas from a recording
server (tests/deploy/conftest.py), Docker as a stand-in on PATH."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import boto3
import pytest

import deploy.deploy as deploy_module
from deploy import preflight


def fake_docker(folder: Path, buildx: bool) -> Path:
    """A `docker` whose `buildx version` succeeds (BuildKit there) or fails as Docker says it."""
    folder.mkdir(exist_ok=True)
    script = folder / "docker"
    answer = (
        "print('github.com/docker/buildx v0.20.1 1234567')"
        if buildx
        else "sys.stderr.write(\"docker: 'buildx' is not a docker command.\\n\"); sys.exit(1)"
    )
    script.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['buildx', 'version']:\n    {answer}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture
def docker_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path / 'bin', True)}:{os.environ['PATH']}")


def rows(out: str) -> dict[str, str]:
    """check name -> its line (and its fix line, when there is one)."""
    found: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith(("PASS", "FAIL")):
            name = next(n for n in preflight_names() if line[6:].startswith(n))
            found[name] = line
        elif name:
            found[name] += "\n" + line
    return found


def preflight_names() -> list[str]:
    return ["credentials", "region", "instance / host image", "GPU quota", "docker + BuildKit"]


def test_everything_in_place_passes(moto_server, quotas, docker_ok, capsys) -> None:
    assert preflight.main(["--region", "us-east-1"]) == 0
    found = rows(capsys.readouterr().out)
    assert sorted(found) == sorted(preflight_names())
    assert all(line.startswith("PASS") for line in found.values()), found
    assert "account 123456789012" in found["credentials"]
    assert "ml.g4dn.xlarge for endpoint usage: 1" in found["GPU quota"]
    assert "al2023-ami-sagemaker-inference-gpu-4-1 runs CUDA 13.0" in found["instance / host image"]
    assert "buildx v0.20.1" in found["docker + BuildKit"]
    assert [c[0] for c in quotas.calls] == ["ServiceQuotasV20190624.ListServiceQuotas"]
    assert quotas.calls[0][1]["ServiceCode"] == "sagemaker"


def test_zero_quota_says_how_to_ask_for_more(moto_server, quotas, docker_ok, capsys) -> None:
    quotas.set_quota("ml.g5.xlarge", 0.0)
    assert preflight.main(["--region", "us-east-1", "--instance-type", "ml.g5.xlarge"]) == 1
    line = rows(capsys.readouterr().out)["GPU quota"]
    assert line.startswith("FAIL") and "ml.g5.xlarge for endpoint usage: 0" in line
    assert "request-service-quota-increase --region us-east-1 --service-code sagemaker --quota-code L-1234ABCD" in line


def test_a_quota_never_changed_is_read_from_the_defaults(moto_server, quotas, docker_ok, capsys) -> None:
    quotas.defaults, quotas.quotas = quotas.quotas, []  # ListServiceQuotas leaves it out
    assert preflight.main(["--region", "us-east-1"]) == 0
    assert "ml.g4dn.xlarge for endpoint usage: 1" in rows(capsys.readouterr().out)["GPU quota"]
    assert [c[0].split(".")[1] for c in quotas.calls] == ["ListServiceQuotas", "ListAWSDefaultServiceQuotas"]


def test_instance_type_without_a_quota_is_not_offered_there(moto_server, quotas, docker_ok, capsys) -> None:
    quotas.set_quota("ml.g5.xlarge", 2.0)  # nothing for ml.g6.xlarge
    assert preflight.main(["--region", "us-east-1", "--instance-type", "ml.g6.xlarge"]) == 1
    line = rows(capsys.readouterr().out)["GPU quota"]
    assert "SageMaker offers no ml.g6.xlarge endpoints there" in line and "pass another --instance-type" in line


def test_unknown_region_lists_the_ones_to_choose(moto_server, quotas, docker_ok, capsys) -> None:
    assert preflight.main(["--region", "eu-west-9"]) == 1
    found = rows(capsys.readouterr().out)
    assert (
        found["region"].startswith("FAIL")
        and "'eu-west-9' is not a region where SageMaker is offered" in found["region"]
    )
    assert "eu-west-1" in found["region"] and "GPU quota" not in found  # nothing asked of a region that is not there


def test_region_not_enabled_for_the_account(moto_server, quotas, docker_ok, capsys, monkeypatch) -> None:
    real = boto3.Session.client

    def client(self, name, *args, **kwargs):
        made = real(self, name, *args, **kwargs)
        if name == "ec2":  # moto enables every region; AWS lists opt-in regions as "not-opted-in"
            listed = made.describe_regions(AllRegions=True)["Regions"]
            for r in listed:
                if r["RegionName"] == "us-east-1":
                    r["OptInStatus"] = "not-opted-in"
            made.describe_regions = lambda **_: {"Regions": listed}
        return made

    monkeypatch.setattr(boto3.Session, "client", client)
    assert preflight.main(["--region", "us-east-1"]) == 1
    line = rows(capsys.readouterr().out)["region"]
    assert "not enabled for this account (not-opted-in)" in line and "Account > AWS Regions" in line


def test_no_credentials(moto_server, quotas, docker_ok, capsys, monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert preflight.main(["--region", "us-east-1"]) == 1
    found = rows(capsys.readouterr().out)
    assert found["credentials"].startswith("FAIL") and "aws configure" in found["credentials"]
    assert "GPU quota" not in found


@pytest.mark.parametrize("buildx", [False, None])
def test_docker_without_buildkit_or_missing(moto_server, quotas, capsys, monkeypatch, tmp_path, buildx) -> None:
    if buildx is None:
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    else:
        monkeypatch.setenv("PATH", f"{fake_docker(tmp_path / 'bin', buildx)}:{os.environ['PATH']}")
    assert preflight.main(["--region", "us-east-1"]) == 1
    line = rows(capsys.readouterr().out)["docker + BuildKit"]
    assert line.startswith("FAIL")
    assert ("docker-buildx-plugin" in line) if buildx is False else ("docker not found on PATH" in line)
    # images already pushed: no Docker needed
    assert preflight.main(["--region", "us-east-1", "--skip-build"]) == 0


def test_instance_that_cannot_run_cuda_13(moto_server, quotas, docker_ok, capsys) -> None:
    assert preflight.main(["--region", "us-east-1", "--instance-type", "ml.p3.2xlarge"]) == 1
    line = rows(capsys.readouterr().out)["instance / host image"]
    assert "ml.p3.2xlarge is not one of the GPU instances the stack offers" in line


def test_memory_reservation_must_fit_the_instance(moto_server, quotas, docker_ok, capsys) -> None:
    assert preflight.main(["--region", "us-east-1", "--memory-reservation-mb", "15000"]) == 1
    assert "does not fit ml.g4dn.xlarge's 16 GiB" in rows(capsys.readouterr().out)["instance / host image"]


def test_deploy_runs_preflight_first_and_creates_nothing_when_it_fails(moto_server, quotas, docker_ok, capsys) -> None:
    quotas.set_quota("ml.g4dn.xlarge", 0.0)
    app = "preflightfails"
    assert deploy_module.main(["--app", app, "--user1", "ann", "--tag", "v1"]) == 1
    captured = capsys.readouterr()
    assert "FAIL  GPU quota" in captured.out
    assert "the preflight checks above failed; nothing was created" in captured.err
    repos = boto3.client("ecr").describe_repositories()["repositories"]
    assert not [r for r in repos if r["repositoryName"].startswith(app)]
    assert deploy_module.stack_status(boto3.client("cloudformation"), app) is None
