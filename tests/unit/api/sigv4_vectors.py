#!/usr/bin/python3
"""Signs KMS-shaped requests with botocore, the independent oracle of sigv4_test.cc.

botocore.auth.SigV4Auth is the pure-Python signer boto3 falls back to; awscrt's signer (aws-c-auth,
botocore.crt.auth.CrtSigV4Auth, what boto3 actually uses when awscrt is installed) signs a copy of
each request too, and the script stops unless both agree. The clock is pinned by patching the
datetime both signers read.

Regenerate with Debian's botocore (not a pyenv python, whose botocore may differ):

    /usr/bin/python3 tests/unit/api/sigv4_vectors.py

and paste the output over the block between "// clang-format off" and "// clang-format on" inside
the BEGIN/END GENERATED markers of sigv4_test.cc; the block is kept byte for byte as printed, so
a regeneration that changes nothing shows no diff.
"""

import calendar
import datetime
import hashlib
import json
from unittest import mock
from urllib.parse import urlsplit

import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

try:
    from botocore.crt.auth import CrtSigV4Auth
except ImportError:  # awscrt missing: botocore alone is still an oracle
    CrtSigV4Auth = None

ACCESS_KEY = "cli_5f0c2a9e41d7b388"
SECRET = "Q7m+x/2kLr9vTz0bWc3yHn8sJd4fGa6pEu1iKo5qRt"
WHEN = datetime.datetime(2026, 3, 12, 10, 15, 0)
USER_AGENT = "Botocore/%s Python/3.11.2 Linux/6.1.0" % botocore.__version__
JSON11 = "application/x-amz-json-1.1"


def kms_body(obj):
    # boto3's JSON serializer: json.dumps with ensure_ascii and ", "/": " separators.
    return json.dumps(obj).encode("utf-8")


CASES = [
    dict(name="boto3 Encrypt over plain HTTP to a port",
         method="POST", url="http://127.0.0.1:8443/", region="eu-west-1",
         headers={"X-Amz-Target": "TrentService.Encrypt", "Content-Type": JSON11,
                  "User-Agent": USER_AGENT},
         body=kms_body({"KeyId": "alias/demo", "Plaintext": "aGVsbG8="})),
    dict(name="GenerateDataKey with a non-ASCII encryption context, raw UTF-8 body",
         method="POST", url="https://kms.example.test/", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.GenerateDataKey", "Content-Type": JSON11},
         body=json.dumps({"KeyId": "alias/payments", "KeySpec": "AES_256",
                          "EncryptionContext": {"tenant": "Zürich ☃"}},
                         ensure_ascii=False).encode("utf-8")),
    # The query built as botocore's clients build it (prepare_request_dict: percent_encode_sequence
    # into the URL). AWSRequest(params=...) would instead send quote_plus's '+' for a space while
    # signing %20, a form awscrt's signer reads as a literal '+'; kekd sides with awscrt.
    dict(name="query with spaces, unicode, repeats, empty values and reserved characters",
         method="GET", region="us-east-1",
         url="https://kms.example.test/?" + percent_encode_sequence(
             [("b", "two words"), ("a", "x"), ("a", "ü"), ("a", "A"), ("empty", ""),
              ("tilde~", "-_.~"), ("plus", "1+1=2"), ("slash", "a/b"), ("Z", "upper")]),
         headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": JSON11},
         body=b""),
    dict(name="query as sent, with a flag without '=' and an escaped space",
         method="GET", url="https://kms.example.test/?flag&b=c%20d&a=1", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.ListAliases"}, body=b""),
    dict(name="path with dot segments, doubled slashes, %20, a raw space and UTF-8",
         method="POST", url="https://kms.example.test/x//./y/../a%20b/c d/\u00fc/", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.DescribeKey", "Content-Type": JSON11},
         body=kms_body({"KeyId": "alias/demo"})),
    dict(name="header values with runs of spaces and tabs",
         method="POST", url="https://kms.example.test/", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.Decrypt", "Content-Type": JSON11,
                  "X-Kekd-Note": "  a   b \t c  ", "X-Kekd-Quoted": '"a   b   c"'},
         body=kms_body({"CiphertextBlob": "AAEC"})),
    dict(name="X-Amz-Content-SHA256 sent and signed",
         method="POST", url="https://kms.example.test/", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.GenerateRandom", "Content-Type": JSON11,
                  "X-Amz-Content-SHA256": hashlib.sha256(kms_body({"NumberOfBytes": 32})).hexdigest()},
         body=kms_body({"NumberOfBytes": 32})),
    dict(name="POST with an empty body",
         method="POST", url="https://kms.example.test/", region="us-east-1",
         headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": JSON11}, body=b""),
]


def sign(signer_class, case, url=None, params=None):
    """Signs a fresh request; returns it and the canonical request the signer hashed."""
    request = AWSRequest(method=case["method"], url=url or case["url"],
                         headers=dict(case["headers"]), data=case["body"],
                         params=list(case.get("params", [])) if params is None else params)
    signer = signer_class(Credentials(ACCESS_KEY, SECRET), "kms", case["region"])
    seen = []
    if hasattr(signer, "canonical_request"):
        hashed = signer.canonical_request
        signer.canonical_request = lambda r: seen.append(hashed(r)) or seen[-1]
    with mock.patch("datetime.datetime", wraps=datetime.datetime) as clock:
        clock.utcnow.return_value = WHEN
        signer.add_auth(request)
    return request, (seen[0] if seen else None)


def c_string(data):
    """A C++ string literal; octal escapes, because a hex escape swallows the digits after it."""
    out = []
    for byte in data:
        ch = chr(byte)
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7f:
            out.append(ch)
        else:
            out.append("\\%03o" % byte)
    return '"' + "".join(out) + '"'


def c_multiline(text, indent):
    lines = text.encode("utf-8").split(b"\n")
    parts = [c_string(line + b"\n") for line in lines[:-1]] + [c_string(lines[-1])]
    return ("\n" + " " * indent).join(parts)


def main():
    when_ms = calendar.timegm(WHEN.timetuple()) * 1000
    print("// Generated by tests/unit/api/sigv4_vectors.py with botocore %s; access key %s."
          % (botocore.__version__, ACCESS_KEY))
    print("constexpr std::string_view kBotocoreSecret = %s;" % c_string(SECRET.encode()))
    print("constexpr UnixMillis kBotocoreSignedAt = %d;  // %s" % (when_ms, WHEN.isoformat() + "Z"))
    print("const BotocoreVector kBotocoreVectors[] = {")
    for case in CASES:
        request, canonical = sign(SigV4Auth, case)
        authorization = request.headers["Authorization"]
        signature = authorization.rsplit("Signature=", 1)[1]
        prepared = request.prepare()
        if CrtSigV4Auth is not None:
            # CRT takes the query only as a dict, so it gets the URL as sent instead.
            crt_request, _ = sign(CrtSigV4Auth, case, url=prepared.url, params=[])
            crt_signature = crt_request.headers["Authorization"].rsplit("Signature=", 1)[1]
            assert crt_signature == signature, (case["name"], crt_signature, signature)
        parts = urlsplit(prepared.url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        headers = {"host": parts.netloc}
        for name, value in prepared.headers.items():
            headers[name.lower()] = value.decode() if isinstance(value, bytes) else value
        print("    {%s," % c_string(case["name"].encode()))
        print("     %s, %s, %s," % (c_string(case["method"].encode()), c_string(target.encode()),
                                    c_string(case["region"].encode())))
        print("     {")
        for name in sorted(headers):
            print("         {%s, %s}," % (c_string(name.encode()), c_string(headers[name].encode())))
        print("     },")
        print("     %s," % c_string(case["body"]))
        print("     %s," % c_multiline(canonical, 5))
        print("     %s}," % c_string(signature.encode()))
    print("};")


if __name__ == "__main__":
    main()
