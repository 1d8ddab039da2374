#!/bin/bash
# LocalStack "ready" hook (mounted at /etc/localstack/init/ready.d/ by docker-compose.yml): the
# bucket that holds the store (state/, logs/) exists before anything uses it, in either runner
# mode: Filebeat starts polling it and the scheduler writes to it without waiting for `deploy`
# (which creates it too; both are idempotent). LocalStack's free edition keeps nothing across
# restarts, so this runs on every start. The localstack service is healthy only once it succeeded.
#
# The name must be deploy's default (jobs.deploy.DEFAULT_BUCKET) and Filebeat's
# (infra/filebeat/filebeat.yml); tests/test_compose.py checks that they agree.
set -euo pipefail

bucket="${STOCKPULSE_BUCKET:-stockpulse}"
region="${AWS_DEFAULT_REGION:-us-east-1}"

if awslocal s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    echo "stockpulse: s3://$bucket exists"
    exit 0
fi
if [ "$region" = us-east-1 ]; then
    awslocal s3api create-bucket --bucket "$bucket" >/dev/null
else
    awslocal s3api create-bucket --bucket "$bucket" \
        --create-bucket-configuration "LocationConstraint=$region" >/dev/null
fi
echo "stockpulse: created s3://$bucket ($region)"
