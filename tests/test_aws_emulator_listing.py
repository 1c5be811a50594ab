"""The AWS emulator answers ListModels as SageMaker does: NameContains filters, pages are bounded."""

from __future__ import annotations

import boto3
import pytest

pytestmark = pytest.mark.slow


def test_list_models_filters_by_name_and_pages(aws_emulator):
    sm = boto3.client("sagemaker")
    names = [f"listing-{i:02d}" for i in range(12)] + ["other-model"]
    for name in names:
        sm.create_model(ModelName=name, PrimaryContainer={"Image": "img"}, ExecutionRoleArn=aws_emulator.role_arn)
    try:
        first = sm.list_models(NameContains="LISTING-", SortBy="Name", SortOrder="Ascending")
        assert [m["ModelName"] for m in first["Models"]] == names[:10]
        assert "NextToken" in first
        rest = sm.list_models(NameContains="listing-", SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"])
        assert [m["ModelName"] for m in rest["Models"]] == names[10:12] and "NextToken" not in rest
        paged = [m["ModelName"] for page in sm.get_paginator("list_models").paginate(NameContains="listing-") for m in page["Models"]]
        assert sorted(paged) == names[:12]
    finally:
        for name in names:
            sm.delete_model(ModelName=name)
