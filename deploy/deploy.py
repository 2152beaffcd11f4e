"""Deploy or update SAM Studio on AWS: ECR repositories, both images, the CloudFormation stack.

    python -m deploy.deploy --user1 ann [--user2 bob] [--region eu-west-1] [--certificate-arn ARN]

Steps: (0) the preflight checks (deploy/preflight.py: credentials, region, GPU quota, Docker with
BuildKit, instance type / host image / CUDA), stopping before anything is created when one fails;
(1) create the ECR repositories `<app>-server1` / `<app>-server2` if missing; (2) docker
build and push both images with one new tag; (3) create the stack deploy/stack.yaml, or update it
(new images, new parameters); (4) print the URL and how to read the generated passwords.
Credentials and region come from the standard AWS chain (AWS_PROFILE, AWS_REGION, ...).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from deploy import preflight
from studio import layout, modelfiles

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "stack.yaml"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
IMAGES = {"server1": "Server1.Dockerfile", "server2": "Server2.Dockerfile"}
WAIT = {"Delay": 15, "MaxAttempts": 480}  # stack waits: up to 2 hours (a first endpoint takes ~15 min)
KEEP_IMAGES = 10  # per repository; older images are expired by an ECR lifecycle rule


class DeployError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


@dataclass(frozen=True)
class Image:
    name: str  # server1 | server2
    repository: str  # <app>-server1
    uri: str  # <registry>/<repository>
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.uri}:{self.tag}"


def repository_names(app: str) -> dict[str, str]:
    return {name: f"{app}-{name}" for name in IMAGES}


def ensure_repositories(ecr, app: str, tag: str) -> list[Image]:
    """The two ECR repositories (created when missing, scanned on push, old images expired)."""
    images = []
    for name, repository in repository_names(app).items():
        try:
            repo = ecr.create_repository(
                repositoryName=repository,
                imageScanningConfiguration={"scanOnPush": True},
                encryptionConfiguration={"encryptionType": "AES256"},
            )["repository"]
            print(f"created ECR repository {repository}")
        except ClientError as e:
            if e.response["Error"]["Code"] != "RepositoryAlreadyExistsException":
                raise
            repo = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        ecr.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=_lifecycle_policy())
        images.append(Image(name, repository, repo["repositoryUri"], tag))
    return images


def _lifecycle_policy() -> str:
    rule = {
        "rulePriority": 1,
        "description": f"keep the last {KEEP_IMAGES} images",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
        "action": {"type": "expire"},
    }
    return json.dumps({"rules": [rule]})


def default_tag() -> str:
    """<UTC time>-<git commit>: unique per deploy, traceable to the code."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return stamp
    return f"{stamp}-{commit}"


def docker(*args: str, stdin: str | None = None) -> None:
    exe = shutil.which("docker")
    if exe is None:
        raise DeployError("docker not found on PATH: install Docker, or pass --skip-build with an existing --tag")
    print("+ docker " + " ".join(args), flush=True)
    try:
        subprocess.run([exe, *args], cwd=REPO, input=stdin, text=True, check=True)
    except subprocess.CalledProcessError as e:
        raise DeployError(f"docker {args[0]} failed (exit {e.returncode})") from None


def stage_weights(source: Path) -> None:
    """Copy the weight files (the default configuration's) into deploy/weights/, where Server2.Dockerfile bakes them,
    with MobileSAM's encoder and decoder for the editor (copied from source when there, else exported from
    mobile_sam.pt), so that the baked image starts without exporting."""
    missing = [f for f in modelfiles.ModelChoice().files() if not (source / f).is_file()]
    if missing:
        raise DeployError(f"--bake-weights {source}: missing {', '.join(missing)}")
    for f in [*modelfiles.ModelChoice().files(), *(p.name for p in source.iterdir() if layout.is_editor_file(p.name))]:
        target = WEIGHTS_DIR / f
        if not target.exists() or target.stat().st_size != (source / f).stat().st_size:
            shutil.copyfile(source / f, target)
    from server2.embeddings import export_editor_models  # torch: only for a bake

    print(f"+ MobileSAM's editor models in {WEIGHTS_DIR}: {export_editor_models(WEIGHTS_DIR)}", flush=True)


def build_and_push(ecr, images: list[Image], bake_weights: bool) -> None:
    auth = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
    registry = images[0].uri.split("/", 1)[0]
    docker("login", "--username", user, "--password-stdin", registry, stdin=password)
    for image in images:
        args = ["build", "--platform", "linux/amd64", "-f", IMAGES[image.name], "-t", image.ref]
        if image.name == "server2" and bake_weights:
            args += ["--build-arg", "BAKE_WEIGHTS=1"]
        docker(*args, ".")
        docker("push", image.ref)


def default_network(ec2) -> tuple[str, list[str]]:
    """The default VPC and its default subnets (one per availability zone)."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise DeployError("this region has no default VPC: pass --vpc-id and --subnets (two public subnets)")
    vpc = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
    if len(by_zone) < 2:
        raise DeployError(f"the default VPC {vpc} needs subnets in two availability zones; pass --subnets")
    return vpc, [by_zone[z] for z in sorted(by_zone)]


def stack_parameters(args: argparse.Namespace, images: list[Image], vpc: str, subnets: list[str]) -> list[dict]:
    uri = {image.name: image.ref for image in images}
    values = {
        "AppName": args.app,
        "Server1Image": uri["server1"],
        "Server2Image": uri["server2"],
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
        "AllowedCidr": args.allowed_cidr,
        "CertificateArn": args.certificate_arn,
        "InstanceType": args.instance_type,
        "MinInstanceCount": str(args.min_instances),
        "MemoryReservationMb": str(args.memory_reservation_mb),
        "ScaleDownAfterSeconds": str(args.scale_down_after),
        "AppUser1": args.user1,
        "AppUser2": args.user2,
        "BucketVersioning": "true" if args.versioning else "false",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def stack_status(cfn, stack: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" in e.response["Error"].get("Message", ""):
            return None
        raise


# AWS refusals seen on real accounts, and what to do about each.
ADVICE = {
    "Min instance count needs to be greater than 0": (
        "this region refuses MinInstanceCount 0 for managed instance scaling: deploy to another region, or "
        "pass --min-instances 1 (one GPU instance then runs, and is billed, around the clock)"
    ),
    "not enough hardware resources": (
        "the inference component does not fit the instance: pass a smaller --memory-reservation-mb "
        "(see python -m deploy.measure_startup) or a larger --instance-type"
    ),
    "ResourceLimitExceeded": (
        "the account's quota for this instance type is too low: see python -m deploy.preflight for the request"
    ),
}


def failure_reasons(cfn, stack: str) -> str:
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"].endswith("_FAILED") and e.get("ResourceStatusReason")]
    reasons = [f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}" for e in failed[:5]]
    advice = [fix for cause, fix in ADVICE.items() if any(cause in r for r in reasons)]
    return "; ".join(reasons + [f"what to do: {a}" for a in advice]) or "see the console"


def deploy_stack(cfn, stack: str, parameters: list[dict]) -> dict[str, str]:
    """Create or update the stack and wait; its outputs."""
    body = TEMPLATE.read_text()
    status = stack_status(cfn, stack)
    if status == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated, only replaced
        print(f"stack {stack} is in ROLLBACK_COMPLETE after a failed create: deleting it first")
        cfn.delete_stack(StackName=stack)
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack)
        status = None
    common = {"StackName": stack, "TemplateBody": body, "Parameters": parameters, "Capabilities": ["CAPABILITY_IAM"]}
    try:
        if status is None:
            print(f"creating stack {stack} (the SageMaker endpoint takes 10-20 minutes)", flush=True)
            cfn.create_stack(**common, OnFailure="ROLLBACK")
            cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig=WAIT)
        else:
            print(f"updating stack {stack} (was {status})", flush=True)
            try:
                cfn.update_stack(**common)
            except ClientError as e:
                if "No updates are to be performed" not in e.response["Error"].get("Message", ""):
                    raise
                print("stack already up to date")
            else:
                cfn.get_waiter("stack_update_complete").wait(StackName=stack, WaiterConfig=WAIT)
    except WaiterError:
        raise DeployError(f"stack {stack} failed: {failure_reasons(cfn, stack)}") from None
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


def aws_session(region: str | None) -> boto3.Session:
    """--region, else AWS_REGION (boto3 itself reads only AWS_DEFAULT_REGION), else the profile's."""
    session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    if session.region_name is None:
        raise DeployError(
            "no AWS region: pass --region (a region with SageMaker GPU endpoints, e.g. --region eu-west-1), "
            "set AWS_REGION, or set one in your profile (aws configure set region eu-west-1)"
        )
    return session


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deploy.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--user1", required=True, help="first login name (password generated in Secrets Manager)")
    p.add_argument("--user2", default="", help="second login name (optional)")
    p.add_argument("--app", default="sam-studio", help="name prefix of every resource and the stack name")
    p.add_argument("--region", help="AWS region (else AWS_REGION / your profile's)")
    p.add_argument("--instance-type", default="ml.g4dn.xlarge", help="GPU instance of the endpoint")
    p.add_argument("--certificate-arn", default="", help="ACM certificate for HTTPS (optional)")
    p.add_argument("--allowed-cidr", default="0.0.0.0/0", help="who may reach the web app")
    p.add_argument("--vpc-id", help="VPC (default: the default VPC)")
    p.add_argument("--subnets", help="comma-separated public subnets in two zones (default: the default VPC's)")
    p.add_argument(
        "--min-instances",
        type=int,
        choices=(0, 1),
        default=0,
        help="fewest GPU instances; 1 only where a region refuses 0 (the GPU then bills around the clock)",
    )
    p.add_argument(
        "--memory-reservation-mb",
        type=int,
        default=preflight.DEFAULT_MEMORY_MB,
        help="host memory reserved for Server2 (measured: python -m deploy.measure_startup)",
    )
    p.add_argument("--scale-down-after", type=int, default=300, help="idle seconds before the GPU goes to zero")
    p.add_argument("--versioning", action="store_true", help="keep old object versions in the bucket")
    p.add_argument("--tag", help="image tag (default: time + git commit)")
    p.add_argument("--skip-build", action="store_true", help="use images already pushed with --tag")
    p.add_argument("--bake-weights", type=Path, metavar="DIR", help="bake the weights in DIR into Server2")
    args = p.parse_args(argv)
    if args.skip_build and not args.tag:
        p.error("--skip-build needs --tag (the tag of images already in ECR)")
    if bool(args.vpc_id) != bool(args.subnets):
        p.error("--vpc-id and --subnets go together")
    return args


def run_reported(action: str, work: Callable[[], None]) -> int:
    """Run work; 0, or 1 with one line "<action> failed: ..." for a DeployError or an AWS error."""
    try:
        work()
    except DeployError as e:
        print(f"{action} failed: {e}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as e:
        print(f"{action} failed: AWS: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def deploy() -> None:
        session = aws_session(args.region)
        if not preflight.preflight(
            session.region_name, args.instance_type, args.memory_reservation_mb, build=not args.skip_build
        ):
            raise DeployError("the preflight checks above failed; nothing was created")
        account = session.client("sts").get_caller_identity()["Account"]
        print(f"deploying {args.app} to account {account}, region {session.region_name}")
        ecr = session.client("ecr")
        images = ensure_repositories(ecr, args.app, args.tag or default_tag())
        if not args.skip_build:
            if args.bake_weights:
                stage_weights(args.bake_weights)
            build_and_push(ecr, images, bool(args.bake_weights))
        if args.vpc_id:
            vpc, subnets = args.vpc_id, [s.strip() for s in args.subnets.split(",") if s.strip()]
        else:
            vpc, subnets = default_network(session.client("ec2"))
        outputs = deploy_stack(session.client("cloudformation"), args.app, stack_parameters(args, images, vpc, subnets))
        print_summary(args, outputs, session.region_name)

    return run_reported("deploy", deploy)


def print_summary(args: argparse.Namespace, outputs: dict[str, str], region: str) -> None:
    print(f"\nSAM Studio is at {outputs.get('Url', '(no URL output)')}")
    print(f"storage: {outputs.get('SharedDir')}   endpoint: {outputs.get('EndpointName')}")
    for user, key in ((args.user1, "Pass1SecretArn"), (args.user2, "Pass2SecretArn")):
        if user and key in outputs:
            print(
                f"password of {user}: aws secretsmanager get-secret-value --region {region} "
                f"--secret-id {outputs[key]} --query SecretString --output text"
            )


if __name__ == "__main__":
    sys.exit(main())
