#!/usr/bin/env bash
# LocalStack init hook: what cloudml's aws provider needs in a fresh account (the same as
# `cloudml emulator aws` creates): a SageMaker execution role and the cloudml-artifacts bucket.
set -euo pipefail
awslocal iam create-role --role-name cloudml-sagemaker-execution \
  --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}' >/dev/null
awslocal iam put-role-policy --role-name cloudml-sagemaker-execution --policy-name cloudml-execution \
  --policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::cloudml-*/*"},{"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents","logs:CreateLogGroup"],"Resource":"*"}]}'
awslocal s3 mb s3://cloudml-artifacts >/dev/null
echo "cloudml: role arn:aws:iam::000000000000:role/cloudml-sagemaker-execution and bucket cloudml-artifacts are ready"
