"""deploy/stack.yaml: cfn-lint clean, an endpoint that can legally go to zero, least-privilege
roles, secrets from Secrets Manager, names that match what the servers read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

from deploy import host_image, preflight
from harness import REPO
from server1.lifecycle.coordinator import MAX_WARMING_SECONDS
from tests.deploy.dockerfiles import Dockerfile

TEMPLATE = REPO / "deploy" / "stack.yaml"


@pytest.fixture(scope="module")
def stack() -> dict:
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors
    return template


def resources(stack: dict, kind: str) -> dict:
    return {k: v["Properties"] for k, v in stack["Resources"].items() if v["Type"] == kind}


def one(stack: dict, kind: str) -> dict:
    (props,) = resources(stack, kind).values()
    return props


def statements(role: dict) -> list[dict]:
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_clean() -> None:
    lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_endpoint_can_go_to_zero_instances(stack: dict) -> None:
    (variant,) = one(stack, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": {"Ref": "MinInstanceCount"},
        "MaxInstanceCount": 1,
        # the instance is released once it hosts no copy, instead of outliving it
        "ScaleInPolicy": {"Strategy": "IDLE_RELEASE"},
    }
    assert stack["Parameters"]["MinInstanceCount"]["Default"] == 0
    assert stack["Parameters"]["MinInstanceCount"]["AllowedValues"] == [0, 1]  # 1: regions that refuse 0
    assert "ModelName" not in variant  # the model lives in the inference component
    component = one(stack, "AWS::SageMaker::InferenceComponent")
    assert component["VariantName"] == variant["VariantName"] == "AllTraffic"
    assert component["Specification"]["ModelName"] == {"Fn::GetAtt": ["Server2Model", "ModelName"]}
    assert component["Specification"]["ComputeResourceRequirements"]["NumberOfAcceleratorDevicesRequired"] == 1


def test_copy_count_is_one_at_creation_and_zero_only_by_scaling(stack: dict) -> None:
    # CreateInferenceComponent refuses 0 copies; Server1 and Server2's idle guard scale it to 0 later.
    assert one(stack, "AWS::SageMaker::InferenceComponent")["RuntimeConfig"] == {"CopyCount": 1}
    assert not [name for name in stack["Parameters"] if "Copy" in name]


def test_host_image_is_the_one_chosen_for_the_images_cuda(stack: dict) -> None:
    (variant,) = one(stack, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["InferenceAmiVersion"] == host_image.HOST_IMAGE
    assert stack["Parameters"]["InstanceType"]["AllowedValues"] == list(host_image.INSTANCES)
    assert stack["Parameters"]["InstanceType"]["Default"] == preflight.DEFAULT_INSTANCE
    for instance_type in host_image.INSTANCES:
        assert host_image.fit_problems(instance_type, variant["InferenceAmiVersion"]) == []


def test_memory_reservation_and_startup_timeout_are_parameters(stack: dict) -> None:
    spec = one(stack, "AWS::SageMaker::InferenceComponent")["Specification"]
    assert spec["ComputeResourceRequirements"]["MinMemoryRequiredInMb"] == {"Ref": "MemoryReservationMb"}
    assert stack["Parameters"]["MemoryReservationMb"]["Default"] == preflight.DEFAULT_MEMORY_MB
    assert spec["StartupParameters"] == {
        "ContainerStartupHealthCheckTimeoutInSeconds": {"Ref": "StartupTimeoutSeconds"}
    }
    timeout = stack["Parameters"]["StartupTimeoutSeconds"]
    assert 300 <= timeout["Default"] <= 1200  # measured start-up with a margin, not an hour
    assert timeout["Default"] + 600 <= MAX_WARMING_SECONDS  # a login waits for provisioning + start-up


def test_servers_are_told_the_names_the_template_creates(stack: dict) -> None:
    component_name = one(stack, "AWS::SageMaker::InferenceComponent")["InferenceComponentName"]
    endpoint_name = one(stack, "AWS::SageMaker::Endpoint")["EndpointName"]
    model_env = one(stack, "AWS::SageMaker::Model")["PrimaryContainer"]["Environment"]
    (container,) = one(stack, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    task_env = {e["Name"]: e["Value"] for e in container["Environment"] if "Name" in e}
    for env in (model_env, task_env):
        assert env["SAGEMAKER_INFERENCE_COMPONENT"] == component_name
        assert env["SAGEMAKER_ENDPOINT"] == endpoint_name
        assert env["SHARED_DIR"] == {"Fn::Sub": "s3://${Bucket}/shared"}
        assert env["SCALE_DOWN_AFTER_SECONDS"] == {"Ref": "ScaleDownAfterSeconds"}
    assert task_env["SAGEMAKER_VARIANT"] == "AllTraffic"


def test_passwords_and_session_key_come_from_secrets_manager(stack: dict) -> None:
    (container,) = one(stack, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    plain = {e.get("Name") for e in container["Environment"]} | {
        e["Fn::If"][1]["Name"] for e in container["Environment"] if "Fn::If" in e
    }
    assert not plain & {"APP_PASS1", "APP_PASS2", "SECRET_KEY"}
    secrets = {e["Name"]: e["ValueFrom"] for e in container["Secrets"] if "Name" in e}
    secrets |= {e["Fn::If"][1]["Name"]: e["Fn::If"][1]["ValueFrom"] for e in container["Secrets"] if "Fn::If" in e}
    assert secrets == {
        "APP_PASS1": {"Ref": "Pass1Secret"},
        "APP_PASS2": {"Ref": "Pass2Secret"},
        "SECRET_KEY": {"Ref": "SessionKeySecret"},
    }
    for name in ("Pass1Secret", "Pass2Secret", "SessionKeySecret"):
        resource = stack["Resources"][name]
        assert resource["Type"] == "AWS::SecretsManager::Secret"
        assert resource["Properties"]["GenerateSecretString"]["PasswordLength"] >= 20  # generated: no default


def test_no_wildcard_permissions(stack: dict) -> None:
    for name, role in resources(stack, "AWS::IAM::Role").items():
        for statement in statements(role):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, (name, action)
            if statement["Resource"] == "*":  # only actions AWS has no resource-level permissions for
                assert as_list(statement["Action"]) in (["ecr:GetAuthorizationToken"], ["cloudwatch:PutMetricData"])


def arn_of(kind: str) -> dict:
    names = {"endpoint": "${AppName}", "inference-component": "${AppName}-server2"}
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/{names[kind]}"}


def sagemaker_grants(role: dict) -> dict[str, list]:
    grants: dict[str, list] = {}
    for statement in statements(role):
        for action in as_list(statement["Action"]):
            if action.startswith("sagemaker:"):
                grants.setdefault(action, []).extend(as_list(statement["Resource"]))
    return grants


def test_server1_may_scale_and_invoke_one_endpoint_only(stack: dict) -> None:
    endpoint, component = arn_of("endpoint"), arn_of("inference-component")
    assert sagemaker_grants(stack["Resources"]["Server1Role"]["Properties"]) == {
        "sagemaker:DescribeEndpoint": [endpoint],
        "sagemaker:UpdateEndpointWeightsAndCapacities": [endpoint],
        "sagemaker:InvokeEndpoint": [endpoint, component],
        "sagemaker:DescribeInferenceComponent": [component],
        "sagemaker:UpdateInferenceComponentRuntimeConfig": [component],
    }
    assert one(stack, "AWS::SageMaker::InferenceComponent")["InferenceComponentName"] == {
        "Fn::Sub": "${AppName}-server2"
    }


def test_server2_may_only_scale_itself_down(stack: dict) -> None:
    assert sagemaker_grants(stack["Resources"]["Server2Role"]["Properties"]) == {
        "sagemaker:UpdateInferenceComponentRuntimeConfig": [arn_of("inference-component")]
    }


@pytest.mark.parametrize("role", ["Server1Role", "Server2Role"])
def test_bucket_access_is_this_bucket_only(stack: dict, role: str) -> None:
    s3 = {
        action: statement["Resource"]
        for statement in statements(stack["Resources"][role]["Properties"])
        for action in as_list(statement["Action"])
        if action.startswith("s3:")
    }
    objects = {"Fn::Sub": "${Bucket.Arn}/*"}
    assert s3 == {
        "s3:ListBucket": {"Fn::GetAtt": ["Bucket", "Arn"]},
        "s3:GetObject": objects,
        "s3:PutObject": objects,
        "s3:DeleteObject": objects,
        "s3:AbortMultipartUpload": objects,  # boto3's upload_file cleans up after a failed multipart upload
    }


def test_bucket_is_private_encrypted_and_kept(stack: dict) -> None:
    bucket = stack["Resources"]["Bucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"]["Status"] == {"Fn::If": ["Versioned", "Enabled", "Suspended"]}


def test_https_is_optional(stack: dict) -> None:
    assert stack["Conditions"]["HasCertificate"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]}
    assert stack["Resources"]["HttpsListener"]["Condition"] == "HasCertificate"
    assert stack["Parameters"]["CertificateArn"]["Default"] == ""
    # with a certificate, plain HTTP only redirects to HTTPS; without one it serves
    (action,) = stack["Resources"]["HttpListener"]["Properties"]["DefaultActions"]
    condition, with_certificate, without = action["Fn::If"]
    assert condition == "HasCertificate"
    assert with_certificate == {
        "Type": "redirect",
        "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
    }
    assert without["Type"] == "forward"


def test_ecs_health_check_is_the_images_own(stack: dict) -> None:
    (container,) = one(stack, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    assert container["HealthCheck"]["Command"] == [
        "CMD",
        *Dockerfile.read("Server1.Dockerfile").exec_form("HEALTHCHECK"),
    ]
    assert one(stack, "AWS::ElasticLoadBalancingV2::TargetGroup")["HealthCheckPath"] == "/healthz"
    assert [m["ContainerPort"] for m in container["PortMappings"]] == [5050]
