"""Before anything is created: can this account deploy SAM Studio to this region?

    python -m deploy.preflight --region eu-west-1 [--instance-type ml.g5.xlarge] [--skip-build]

Checks credentials (STS), the region (SageMaker offers it; the account has it enabled), that the
instance type, the host image and Server2's CUDA fit together (deploy/host_image.py), that the
memory reservation fits the instance, the account's quota of that instance type for endpoints
(Service Quotas, "<type> for endpoint usage"; a new account often has 0), and that Docker with
BuildKit (buildx) is there to build the images. Prints one row per check, passed or failed with
what to do; exits 1 when any failed. deploy.deploy runs it first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from deploy import host_image

DEFAULT_INSTANCE = "ml.g4dn.xlarge"
# Keep in step with deploy/stack.yaml's MemoryReservationMb default (tests/deploy/test_deploy_preflight.py).
DEFAULT_MEMORY_MB = 1024
# Host memory SageMaker keeps for itself on an instance (its agents); not published: an estimate.
HOST_OVERHEAD_MB = 2048


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _error(e: Exception) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}"
    return str(e) or type(e).__name__


def check_credentials(session: boto3.Session) -> Check:
    try:
        who = session.client("sts").get_caller_identity()
    except NoCredentialsError:
        return Check("credentials", False, "no AWS credentials found", "run `aws configure`, or set AWS_PROFILE")
    except (ClientError, BotoCoreError) as e:
        return Check("credentials", False, _error(e), "check the access key (aws sts get-caller-identity)")
    return Check("credentials", True, f"account {who['Account']} as {who['Arn']}")


def check_region(session: boto3.Session, region: str) -> Check:
    offered = session.get_available_regions("sagemaker")
    if region not in offered:
        return Check(
            "region",
            False,
            f"{region!r} is not a region where SageMaker is offered",
            f"pass --region with one of: {', '.join(sorted(offered))}",
        )
    try:
        regions = session.client("ec2", region_name=region).describe_regions(AllRegions=True)["Regions"]
    except (ClientError, BotoCoreError) as e:
        return Check("region", False, f"cannot list the account's regions: {_error(e)}", "check credentials")
    status = next((r.get("OptInStatus", "") for r in regions if r["RegionName"] == region), "not-listed")
    if status not in ("opt-in-not-required", "opted-in"):
        return Check(
            "region",
            False,
            f"{region} is not enabled for this account ({status})",
            "enable it (AWS console: Account > AWS Regions) or pass another --region",
        )
    return Check("region", True, f"{region} ({status})")


def check_fit(instance_type: str, memory_mb: int) -> Check:
    problems = host_image.fit_problems(instance_type, host_image.HOST_IMAGE)
    instance = host_image.INSTANCES.get(instance_type)
    if instance is not None and memory_mb + HOST_OVERHEAD_MB > instance.memory_gib * 1024:
        problems.append(f"a {memory_mb} MB reservation does not fit {instance_type}'s {instance.memory_gib} GiB")
    cuda = host_image.version(host_image.dockerfile_cuda())
    if problems:
        return Check(
            "instance / host image",
            False,
            "; ".join(problems),
            f"pass --instance-type with one of {', '.join(host_image.INSTANCES)}",
        )
    return Check(
        "instance / host image",
        True,
        f"{instance_type} ({instance.gpu}) on {host_image.HOST_IMAGE} runs CUDA {cuda}",
    )


def check_quota(session: boto3.Session, region: str, instance_type: str) -> Check:
    """SageMaker's per-account quota "<instance type> for endpoint usage" (Service Quotas): the applied
    value, else AWS's default (ListServiceQuotas leaves out quotas whose applied value is not
    available, e.g. never changed)."""
    name = f"{instance_type} for endpoint usage"
    try:
        client = session.client("service-quotas", region_name=region)
        quota = None
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            for page in client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
                quota = next((q for q in page.get("Quotas", []) if q.get("QuotaName") == name), None)
                if quota:
                    break
            if quota:
                break
    except (ClientError, BotoCoreError) as e:
        return Check(
            "GPU quota",
            False,
            f"cannot read the quota {name!r}: {_error(e)}",
            "allow servicequotas:ListServiceQuotas, or look it up in the Service Quotas console",
        )
    if quota is None:
        return Check(
            "GPU quota",
            False,
            f"{region} has no quota {name!r}: SageMaker offers no {instance_type} endpoints there",
            "pass another --instance-type or --region",
        )
    value = int(quota.get("Value", 0))
    if value < 1:
        return Check(
            "GPU quota",
            False,
            f"{name}: {value}",
            f"aws service-quotas request-service-quota-increase --region {region} --service-code sagemaker "
            f"--quota-code {quota.get('QuotaCode')} --desired-value 1 (approval can take a day)",
        )
    return Check("GPU quota", True, f"{name}: {value}")


def check_docker(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Check:
    exe = shutil.which("docker")
    if exe is None:
        return Check(
            "docker + BuildKit",
            False,
            "docker not found on PATH",
            "install Docker (with the buildx plugin), or deploy with --skip-build --tag of pushed images",
        )
    try:
        done = run([exe, "buildx", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("docker + BuildKit", False, f"docker buildx version: {e}", "check the Docker installation")
    if done.returncode != 0:
        return Check(
            "docker + BuildKit",
            False,
            "docker has no buildx (BuildKit), which Server2.Dockerfile's RUN --mount needs",
            "install the docker-buildx-plugin package (or Docker Desktop)",
        )
    return Check("docker + BuildKit", True, done.stdout.strip().splitlines()[0] if done.stdout.strip() else "buildx")


def run_checks(
    session: boto3.Session, region: str, instance_type: str, memory_mb: int, build: bool = True
) -> list[Check]:
    checks = [check_credentials(session)]
    checks.append(check_region(session, region))
    checks.append(check_fit(instance_type, memory_mb))
    if checks[0].ok and checks[1].ok:
        checks.append(check_quota(session, region, instance_type))
    if build:
        checks.append(check_docker())
    return checks


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def preflight(region: str, instance_type: str, memory_mb: int = DEFAULT_MEMORY_MB, build: bool = True) -> bool:
    """Run every check, print the table; True when all passed."""
    checks = run_checks(boto3.Session(region_name=region), region, instance_type, memory_mb, build)
    print(table(checks), flush=True)
    return all(c.ok for c in checks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.preflight", description=__doc__.split("\n\n")[0])
    p.add_argument("--region", required=True, help="the AWS region to deploy to, e.g. eu-west-1")
    p.add_argument("--instance-type", default=DEFAULT_INSTANCE, help="GPU instance of the endpoint")
    p.add_argument("--memory-reservation-mb", type=int, default=DEFAULT_MEMORY_MB, help="Server2's reservation")
    p.add_argument("--skip-build", action="store_true", help="images are already pushed: no Docker needed")
    args = p.parse_args(argv)
    ok = preflight(args.region, args.instance_type, args.memory_reservation_mb, not args.skip_build)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
