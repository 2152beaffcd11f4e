"""deploy/deploy.py and deploy/teardown.py against a moto server.

Covered by moto: STS, ECR (repositories, lifecycle policy, login token), EC2 (default VPC and
subnets), CloudFormation create/update/delete with the real template's S3 bucket, IAM roles, log
groups, SageMaker model, ECS cluster/task definition/service, security groups and load balancer,
and the S3 clean-up of teardown --delete-data. Not covered (moto cannot create them, so the test
template leaves them out): the SageMaker endpoint config / endpoint / inference component (moto
requires a ModelName in every production variant and has no inference components); moto skips the
Secrets Manager secrets and the bucket policy by itself. Docker is a recording stand-in: the
commands and the registry login are checked, the images are not built here.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from cfnlint.decode import decode_str

import deploy.deploy as deploy_module
from deploy import teardown
from harness import REPO
from server2.embeddings import checkpoint_digest
from studio import layout, modelfiles

# Service Quotas (the preflight's GPU quota check) from tests/deploy/conftest.py's recording server.
pytestmark = pytest.mark.usefixtures("quotas")

NOT_IN_MOTO = {"AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint", "AWS::SageMaker::InferenceComponent"}


def plain(node: object) -> object:
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return str(node) if isinstance(node, str) else node


@pytest.fixture
def moto_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """deploy/stack.yaml without the resources moto cannot create (and the outputs naming them)."""
    template, errors = decode_str((REPO / "deploy" / "stack.yaml").read_text())
    assert not errors
    dropped = {k for k, v in template["Resources"].items() if v["Type"] in NOT_IN_MOTO}
    assert len(dropped) == 3
    for name in dropped:
        del template["Resources"][name]
    for name in [k for k, v in template["Outputs"].items() if any(d in json.dumps(plain(v)) for d in dropped)]:
        del template["Outputs"][name]
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(plain(template)))
    monkeypatch.setattr(deploy_module, "TEMPLATE", path)
    return path


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that records its arguments (and the login's stdin) and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.jsonl"
    script = bin_dir / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "stdin = sys.stdin.read() if 'login' in sys.argv else None\n"
        f"open({str(log)!r}, 'a').write(json.dumps({{'args': sys.argv[1:], 'stdin': stdin}}) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def docker_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def app() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def task_definition(app: str) -> dict:
    ecs = boto3.client("ecs")
    service = ecs.describe_services(cluster=app, services=[f"{app}-server1"])["services"][0]
    return ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]


def test_deploy_update_teardown(moto_server, moto_template, docker_log, app, capsys) -> None:
    assert deploy_module.main(["--app", app, "--user1", "ann", "--user2", "bob", "--tag", "v1"]) == 0
    out = capsys.readouterr().out

    # ECR: both repositories, scanned on push, old images expired
    ecr = boto3.client("ecr")
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    for name in ("server1", "server2"):
        assert repos[f"{app}-{name}"]["imageScanningConfiguration"]["scanOnPush"] is True
        assert "imageCountMoreThan" in ecr.get_lifecycle_policy(repositoryName=f"{app}-{name}")["lifecyclePolicyText"]

    # docker: BuildKit checked first (preflight), then login with ECR's token on stdin (never on
    # the command line), build, push
    calls = docker_calls(docker_log)
    assert calls.pop(0)["args"] == ["buildx", "version"]
    token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    login = calls[0]
    assert login["args"][:4] == ["login", "--username", "AWS", "--password-stdin"]
    assert login["stdin"] == password and password not in " ".join(login["args"])
    uri = {name: repos[f"{app}-{name}"]["repositoryUri"] for name in ("server1", "server2")}
    assert [c["args"] for c in calls[1:]] == [
        ["build", "--platform", "linux/amd64", "-f", "Server1.Dockerfile", "-t", f"{uri['server1']}:v1", "."],
        ["push", f"{uri['server1']}:v1"],
        ["build", "--platform", "linux/amd64", "-f", "Server2.Dockerfile", "-t", f"{uri['server2']}:v1", "."],
        ["push", f"{uri['server2']}:v1"],
    ]

    # the stack: Server1's task runs the pushed image with the bucket and the endpoint names
    cfn = boto3.client("cloudformation")
    stack = cfn.describe_stacks(StackName=app)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    default_vpc = boto3.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    assert params["VpcId"] == default_vpc["VpcId"] and len(params["SubnetIds"].split(",")) >= 2
    (container,) = task_definition(app)["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert container["image"] == f"{uri['server1']}:v1"
    assert env["SHARED_DIR"] == f"s3://{outputs['BucketName']}/shared"
    assert env["SAGEMAKER_ENDPOINT"] == app and env["SAGEMAKER_INFERENCE_COMPONENT"] == f"{app}-server2"
    assert (env["APP_USER1"], env["APP_USER2"]) == ("ann", "bob")
    bucket = outputs["BucketName"]
    boto3.client("s3").head_bucket(Bucket=bucket)
    models = boto3.client("sagemaker").list_models(MaxResults=100)["Models"]
    assert len([m for m in models if m["ModelName"].startswith(f"{app}-Server2Model")]) == 1
    assert f"SAM Studio is at {outputs['Url']}" in out

    # a second deploy with a new tag updates the stack to the new images (moto's ECS does not
    # carry a CloudFormation update through to a new task definition, so that part is AWS's)
    assert deploy_module.main(["--app", app, "--user1", "ann", "--user2", "bob", "--tag", "v2"]) == 0
    assert cfn.describe_stacks(StackName=app)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    params = {
        p["ParameterKey"]: p["ParameterValue"] for p in cfn.describe_stacks(StackName=app)["Stacks"][0]["Parameters"]
    }
    assert (params["Server1Image"], params["Server2Image"]) == (f"{uri['server1']}:v2", f"{uri['server2']}:v2")

    # teardown: stack and repositories gone, the bucket with the photos kept
    boto3.client("s3").put_object(Bucket=bucket, Key="shared/ann/input/a.jpg", Body=b"photo")
    assert teardown.main(["--app", app]) == 0
    assert deploy_module.stack_status(cfn, app) is None
    names = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    assert not names & {f"{app}-server1", f"{app}-server2"}
    assert boto3.client("s3").get_object(Bucket=bucket, Key="shared/ann/input/a.jpg")["Body"].read() == b"photo"
    assert f"kept bucket {bucket}" in capsys.readouterr().out


def test_teardown_delete_data_removes_every_version(moto_server, moto_template, docker_log, app) -> None:
    args = ["--app", app, "--user1", "ann", "--tag", "v1", "--versioning"]
    assert deploy_module.main(args) == 0
    cfn = boto3.client("cloudformation")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=app)["Stacks"][0]["Outputs"]}
    bucket, s3 = outputs["BucketName"], boto3.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        s3.put_object(Bucket=bucket, Key="shared/ann/input/a.jpg", Body=body)
    s3.delete_object(Bucket=bucket, Key="shared/ann/input/a.jpg")  # a delete marker too
    assert teardown.main(["--app", app, "--delete-data"]) == 0
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_skip_build_uses_the_given_tag_without_docker(moto_server, moto_template, docker_log, app) -> None:
    assert deploy_module.main(["--app", app, "--user1", "ann", "--skip-build", "--tag", "old"]) == 0
    assert docker_calls(docker_log) == []
    assert task_definition(app)["containerDefinitions"][0]["image"].endswith(f"/{app}-server1:old")
    assert teardown.main(["--app", app]) == 0


def test_missing_docker_is_a_clear_error(moto_server, moto_template, app, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert deploy_module.main(["--app", app, "--user1", "ann", "--tag", "v1"]) == 1
    captured = capsys.readouterr()
    assert "FAIL  docker + BuildKit" in captured.out and "docker not found on PATH" in captured.out
    assert "nothing was created" in captured.err
    assert deploy_module.stack_status(boto3.client("cloudformation"), app) is None


def test_bake_weights_needs_all_four_files(moto_server, moto_template, docker_log, app, tmp_path, capsys) -> None:
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "vit_l.pth").write_bytes(b"x")
    assert deploy_module.main(["--app", app, "--user1", "ann", "--bake-weights", str(weights)]) == 1
    assert "missing mobile_sam.pt, yolov8n.pt, yolov8n-seg.pt, birefnet-dis.onnx" in capsys.readouterr().err
    assert [c["args"] for c in docker_calls(docker_log)] == [["buildx", "version"]]  # the preflight's only


def test_bake_weights_stages_them_and_sets_the_build_arg(
    moto_server, moto_template, docker_log, app, tmp_path, monkeypatch, real_models_dir, real_editor_models
) -> None:
    """The real mobile_sam.pt and its exported encoder and decoder, the rest stand-ins: all staged, so that
    the baked image starts without exporting."""
    weights, staged = tmp_path / "w", tmp_path / "staged"
    weights.mkdir()
    staged.mkdir()
    for name in modelfiles.ModelChoice().files():
        if name == "mobile_sam.pt":
            (weights / name).symlink_to(real_models_dir / name)
        else:
            (weights / name).write_bytes(name.encode())
    for exported in real_editor_models.iterdir():
        (weights / exported.name).symlink_to(exported)
    monkeypatch.setattr(deploy_module, "WEIGHTS_DIR", staged)
    assert deploy_module.main(["--app", app, "--user1", "ann", "--tag", "b1", "--bake-weights", str(weights)]) == 0
    digest = checkpoint_digest(staged / "mobile_sam.pt")
    editor = [layout.encoder_file(digest), layout.decoder_file(digest)]
    assert sorted(p.name for p in staged.iterdir()) == sorted([*modelfiles.ModelChoice().files(), *editor])
    assert all((staged / name).stat().st_size > 1_000_000 for name in editor)
    builds = [c["args"] for c in docker_calls(docker_log) if c["args"][0] == "build"]
    assert "BAKE_WEIGHTS=1" not in builds[0] and builds[1][-3:] == ["--build-arg", "BAKE_WEIGHTS=1", "."]
    assert teardown.main(["--app", app]) == 0


def test_argument_errors(capsys) -> None:
    with pytest.raises(SystemExit):
        deploy_module.main(["--user1", "ann", "--skip-build"])
    assert "--skip-build needs --tag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        deploy_module.main(["--user1", "ann", "--vpc-id", "vpc-1"])
    assert "--vpc-id and --subnets go together" in capsys.readouterr().err


class FailedStack:
    """CloudFormation's DescribeStackEvents after a failed create, with one AWS refusal."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe_stack_events(self, StackName: str) -> dict:
        return {
            "StackEvents": [
                {
                    "LogicalResourceId": "Endpoint",
                    "ResourceStatus": "CREATE_FAILED",
                    "ResourceStatusReason": self.reason,
                },
                {"LogicalResourceId": "Bucket", "ResourceStatus": "CREATE_COMPLETE"},
            ]
        }


@pytest.mark.parametrize(
    ("reason", "advice"),
    [
        (
            'Resource handler returned message: "Min instance count needs to be greater than 0 for enabled '
            'managed instance scaling"',
            "pass --min-instances 1 (one GPU instance then runs, and is billed, around the clock)",
        ),
        (
            'Resource handler returned message: "The inference component could not be placed: not enough '
            'hardware resources"',
            "pass a smaller --memory-reservation-mb",
        ),
    ],
)
def test_known_aws_refusals_say_what_to_do(reason: str, advice: str) -> None:
    text = deploy_module.failure_reasons(FailedStack(reason), "s")
    assert text.startswith(f"Endpoint: {reason}; what to do: ") and advice in text


def test_min_instances_and_memory_reach_the_stack(moto_server, moto_template, docker_log, app) -> None:
    args = ["--app", app, "--user1", "ann", "--skip-build", "--tag", "t"]
    assert deploy_module.main([*args, "--min-instances", "1", "--memory-reservation-mb", "2048"]) == 0
    stack = boto3.client("cloudformation").describe_stacks(StackName=app)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert (params["MinInstanceCount"], params["MemoryReservationMb"]) == ("1", "2048")
    assert teardown.main(["--app", app]) == 0


def test_no_region_says_what_to_do(monkeypatch, tmp_path, capsys) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert deploy_module.main(["--user1", "ann"]) == 1
    err = capsys.readouterr().err
    assert "no AWS region: pass --region" in err and "aws configure set region" in err
