"""Remove SAM Studio from AWS: the stack, then the ECR repositories; the bucket only when asked.

    python -m deploy.teardown [--app sam-studio] [--region eu-west-1] [--delete-data] [--keep-images]

The bucket (everyone's photos and clippings) survives the stack (DeletionPolicy Retain) unless
--delete-data is given: then every object and object version is deleted, and the bucket with them.
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import ClientError, WaiterError

from deploy.deploy import DeployError, aws_session, failure_reasons, repository_names, run_reported, stack_status


def delete_stack(cfn, stack: str) -> dict[str, str]:
    """Delete the stack and wait; its outputs from before (empty when there was none)."""
    if stack_status(cfn, stack) is None:
        print(f"no stack {stack}")
        return {}
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    print(f"deleting stack {stack}", flush=True)
    cfn.delete_stack(StackName=stack)
    try:
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 15, "MaxAttempts": 240})
    except WaiterError:
        raise DeployError(f"deleting stack {stack} failed: {failure_reasons(cfn, stack)}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


def delete_repositories(ecr, app: str) -> None:
    for repository in repository_names(app).values():
        try:
            ecr.delete_repository(repositoryName=repository, force=True)
            print(f"deleted ECR repository {repository}")
        except ClientError as e:
            if e.response["Error"]["Code"] != "RepositoryNotFoundException":
                raise


def delete_bucket(s3, bucket: str) -> None:
    """Every object version and delete marker, then the bucket."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
        keys += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
    print(f"deleted bucket {bucket} and everything in it")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.teardown", description=__doc__.split("\n\n")[0])
    p.add_argument("--app", default="sam-studio", help="the stack / name prefix given to deploy")
    p.add_argument("--region", help="AWS region (else AWS_REGION / your profile's)")
    p.add_argument("--delete-data", action="store_true", help="also delete the bucket and all photos in it")
    p.add_argument("--keep-images", action="store_true", help="keep the ECR repositories")
    args = p.parse_args(argv)

    def teardown() -> None:
        session = aws_session(args.region)
        outputs = delete_stack(session.client("cloudformation"), args.app)
        if not args.keep_images:
            delete_repositories(session.client("ecr"), args.app)
        bucket = outputs.get("BucketName")
        if bucket and args.delete_data:
            delete_bucket(session.client("s3"), bucket)
        elif bucket:
            print(f"kept bucket {bucket} (your photos); --delete-data removes it")

    return run_reported("teardown", teardown)


if __name__ == "__main__":
    sys.exit(main())
