# Source this after starting either stack:  source localstack/env.sh
# (LocalStack's account is 000000000000, the emulator's 123456789012: set AWS_ACCOUNT to match.)
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export CLOUDML_AWS_ROLE_ARN="arn:aws:iam::${AWS_ACCOUNT:-123456789012}:role/cloudml-sagemaker-execution"
