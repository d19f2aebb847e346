"""What an AWS account is to cloudnorm before its driver loads (no SDK import)."""

from __future__ import annotations

from cloudnorm.drivers.registry import ProviderSpec

PROVIDER = ProviderSpec(
    name="aws",
    normalize="cloudnorm.drivers.aws.normalize",
    driver="cloudnorm.drivers.aws.driver:AwsDriver",
    package="boto3", extra="aws", needs=("boto3", "botocore"),
    options={
        "aws_profile": "a named profile of ~/.aws/config",
        "aws_access_key_id": "an explicit access key (with aws_secret_access_key)",
        "aws_secret_access_key": "the secret of aws_access_key_id",
        "aws_session_token": "a session token for temporary credentials",
        "endpoint_url": "an EC2 endpoint other than AWS's own (a local one)",
        "vpc": "the VPC servers go to",
        "subnet": "the subnet servers go to",
        "zone": "the availability zone servers go to",
        "ip": "how servers get a public address: public (the subnet's) or elastic",
    },
    # Nodepool's default for AWS: two writes a second.
    writes_per_second=2.0,
)
