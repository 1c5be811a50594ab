"""Application Auto Scaling for an endpoint variant (min/max replicas)."""

from __future__ import annotations

from cloudml.providers.aws.session import AwsSession, aws_errors

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def policy_name(endpoint: str) -> str:
    return f"cloudml-{endpoint}-invocations"


def current_target(aws: AwsSession, endpoint: str, variant: str) -> dict | None:
    with aws_errors("reading the endpoint's autoscaling registration"):
        found = aws.autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource_id(endpoint, variant)], ScalableDimension=DIMENSION,
        )["ScalableTargets"]
    return found[0] if found else None


def register(aws: AwsSession, endpoint: str, variant: str, *, min_replicas: int, max_replicas: int, target_value: float) -> None:
    rid = resource_id(endpoint, variant)
    with aws_errors(f"registering autoscaling for {endpoint} ({min_replicas}-{max_replicas} instances)"):
        aws.autoscaling.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION,
            MinCapacity=min_replicas, MaxCapacity=max_replicas,
        )
        aws.autoscaling.put_scaling_policy(
            PolicyName=policy_name(endpoint), ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": target_value,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        )


def deregister(aws: AwsSession, endpoint: str, variant: str) -> bool:
    from botocore.exceptions import ClientError

    rid = resource_id(endpoint, variant)
    if current_target(aws, endpoint, variant) is None:
        return False
    with aws_errors(f"removing autoscaling from {endpoint}"):
        try:
            aws.autoscaling.delete_scaling_policy(PolicyName=policy_name(endpoint), ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION)
        except ClientError:
            pass  # no policy (registered by hand): the target still goes
        aws.autoscaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION)
    return True
