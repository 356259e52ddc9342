"""Helpers for the end-to-end tests of the AWS KMS-compatible API (DESIGN §8, issue 6).

The AWS tools are the ones from Debian (/usr/bin/aws, python3-boto3), always run with a clean AWS
environment: no config or credentials file of the machine, no instance metadata, no retries (a
refused request must show up as refused, not be retried until it passes).
"""
import atexit
import base64
import datetime
import http.client
import json
import os
import shutil
import tempfile
import urllib.parse
from unittest import mock

import boto3
import botocore.auth
import botocore.config
import botocore.credentials
from botocore.awsrequest import AWSRequest

REGION = "us-east-1"
ACCOUNT = "000000000000"
ALL = ["datakey", "wrap", "unwrap", "rewrap", "describe"]

# An empty config and credentials file for every AWS tool these tests run (boto3 in this process
# too), so that nothing from the machine's ~/.aws leaks in.
_EMPTY_AWS_DIR = tempfile.mkdtemp(prefix="kekd-e2e-aws-")
atexit.register(shutil.rmtree, _EMPTY_AWS_DIR, True)
_EMPTY_AWS_FILE = os.path.join(_EMPTY_AWS_DIR, "empty")
open(_EMPTY_AWS_FILE, "w").close()
for _name in [n for n in os.environ if n.startswith("AWS_")]:
    del os.environ[_name]
os.environ.update(AWS_CONFIG_FILE=_EMPTY_AWS_FILE, AWS_SHARED_CREDENTIALS_FILE=_EMPTY_AWS_FILE,
                  AWS_EC2_METADATA_DISABLED="true")


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def split_token(token):
    """A kekd bearer token `<client_id>.<secret>` as (access key id, secret access key)."""
    client_id, secret = token.split(".", 1)
    return client_id, secret


def key_arn(key_id):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


def alias_arn(name):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/{name}"


def aws_env(token, region=REGION):
    """The environment of one /usr/bin/aws run: these credentials and nothing else of AWS's."""
    access_key, secret = split_token(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=region,
               AWS_CONFIG_FILE=_EMPTY_AWS_FILE, AWS_SHARED_CREDENTIALS_FILE=_EMPTY_AWS_FILE,
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_MAX_ATTEMPTS="1",
               AWS_RETRY_MODE="standard")
    return env


def kms_client(d, token, **config):
    """A boto3 KMS client for deployment d, signing with the client credential `token`.

    Retries are off: a refused or failed request is seen once, as it was answered."""
    access_key, secret = split_token(token)
    return boto3.client("kms", endpoint_url=d.addr, region_name=REGION, aws_access_key_id=access_key,
                        aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                                      **config))


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)


class _FixedClock:
    """Stands in for the datetime module in botocore.auth: SigV4Auth.add_auth takes its signing
    time from datetime.datetime.utcnow()."""

    def __init__(self, when):
        self.datetime = mock.Mock(utcnow=mock.Mock(return_value=when))


def sign_kms(addr, target, body, access_key, secret, region=REGION, service="kms", when=None):
    """A KMS request signed by botocore's own SigV4 signer; returns (url, headers, body bytes).

    when: the signing time (a naive UTC datetime), default now."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(method="POST", url=addr + "/", data=data,
                         headers={"X-Amz-Target": "TrentService." + target,
                                  "Content-Type": "application/x-amz-json-1.1"})
    signer = botocore.auth.SigV4Auth(botocore.credentials.Credentials(access_key, secret), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "datetime", _FixedClock(when)):
            signer.add_auth(request)
    prepared = request.prepare()
    return prepared.url, dict(prepared.headers), data


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def send(url, headers, body):
    """POSTs exactly these headers and body (http.client adds Host, which botocore signed as
    host:port) and returns the answer, whatever its status."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        headers["Content-Length"] = str(len(body))
        connection.request("POST", parts.path or "/", body=body, headers=headers)
        response = connection.getresponse()
        return RawResponse(response.status, response.getheaders(), response.read().decode())
    finally:
        connection.close()
