#!/usr/bin/python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the real formats.

Each seed is made here independently of kekd's C++ code (python3-cryptography, botocore), so the
targets start from inputs that kekd must accept, plus a few that it must refuse. Keys are fixed
(not random), so running this again gives the same files:

  /usr/bin/python3 tests/fuzz/make_seeds.py

Regression inputs of fixed findings live beside the seeds as regression-*; this script does not
touch them.
"""
import base64
import hashlib
import pathlib
import struct
import sys
from unittest import mock

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- ciphertext: docs/ciphertext.md's worked example, and near misses ---------------------------
WRAPPED = bytes.fromhex(
    "45ad81ae2bc5c9cc8ae54d3ca438a264e7eb9d54a346867aa545573723a964c4"
    "48cb7a2afa0af0858b1507721f86c3530e375dbde553ecd883952bcb0e0b5c5d")


def ciphertext(name=b"payments", version=1, wrapped=WRAPPED, fmt=1):
    return bytes([fmt, len(name)]) + name + struct.pack(">I", version) + wrapped


DOC_CIPHERTEXT = ciphertext()
write("ciphertext", "docs-worked-example", DOC_CIPHERTEXT)
write("ciphertext", "long-name-v7", ciphertext(b"a" + b"-" * 62 + b"z", 7, WRAPPED * 3))
write("ciphertext", "bad-version-0", ciphertext(version=0))
write("ciphertext", "bad-format-2", ciphertext(fmt=2))
write("ciphertext", "bad-wrapped-40", ciphertext(wrapped=WRAPPED[:40]))
write("ciphertext", "bad-name-upper", ciphertext(name=b"Payments"))

# --- sealed_file: docs/sealed-file.md, under the data key 00..1f of sealed_file_fuzz.cc -------
DATA_KEY = bytes(range(32))


def sealed(plaintext, chunk_size=16, key=b"demo", wrapped=DOC_CIPHERTEXT, flags=0):
    header = (b"KEKDSEAL" + bytes([1, flags]) + struct.pack(">I", chunk_size) + bytes([len(key)]) +
              key + struct.pack(">H", len(wrapped)) + wrapped)
    aead = AESGCM(DATA_KEY)
    chunks = [plaintext[i:i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    out = header
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        nonce = i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        out += aead.encrypt(nonce, chunk, header)
    return out


write("sealed_file", "empty", sealed(b""))
write("sealed_file", "one-chunk", sealed(b"hello, sealed world"[:16]))
write("sealed_file", "three-chunks-context", sealed(b"x" * 40, flags=1))
write("sealed_file", "exact-two-chunks", sealed(bytes(range(32))))
write("sealed_file", "chunk-64k", sealed(b"kekd" * 10, chunk_size=65536, key=b"payments"))
write("sealed_file", "bad-version", sealed(b"abc")[:8] + b"\x02" + sealed(b"abc")[9:])
write("sealed_file", "truncated", sealed(b"y" * 20)[:-5])

# --- operators: fixed keys, one Ed25519 and one ECDSA P-256 ------------------------------------
ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BOB = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())


def spki_b64(key):
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


OPERATORS = [("alice", "ed25519", spki_b64(ALICE)), ("bob", "ecdsa-p256", spki_b64(BOB))]
SET = "kekd operator-set v1\nthreshold: 2\n" + "".join(
    f"operator: {n} {a} {k}\n" for n, a, k in OPERATORS)
SET_HASH = "sha256:" + hashlib.sha256(SET.encode()).hexdigest()
CEREMONY_ID = "9c1f0e2ab3d44c5e8f7a1b2c3d4e5f60"


def statement(action, extra=""):
    key = "" if action == "set-operators" else "key: payments\n"
    return (f"kekd ceremony v1\nid: {CEREMONY_ID}\naction: {action}\n{key}{extra}"
            f"operator-set: {SET_HASH}\nthreshold: 2\nproposed-by: admin\n"
            "proposed-at: 2026-11-23T10:00:00Z\nexpires-at: 2026-11-24T10:00:00Z\n")


STATEMENTS = {
    "create-key": statement("create-key"),
    "rotate-key": statement("rotate-key"),
    "disable-version": statement("disable-version", "version: 1\n"),
    "schedule-destroy-version": statement("schedule-destroy-version",
                                          "version: 3\ndestroy-after: 2026-12-23T10:00:00Z\n"),
    "set-operators": statement("set-operators", "".join(
        f"operator: {n} {a} {k}\n" for n, a, k in OPERATORS) + "new-threshold: 2\n"),
}
for name, text in STATEMENTS.items():
    write("statement", name, text)
write("statement", "bad-crlf", STATEMENTS["create-key"].replace("\n", "\r\n"))
write("statement", "bad-unsorted-operators", STATEMENTS["set-operators"].replace(
    "operator: alice", "operator: zed"))
write("statement", "bad-version-leading-zero",
      STATEMENTS["disable-version"].replace("version: 1", "version: 01"))

# --- transcript: a document as docs/ceremony-formats.md lays it out -----------------------------


def sign(key, message):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def transcript(statement_text, state, approvals, outcome=""):
    lines = "".join(
        f"approval: {name} {at} {base64.b64encode(sign(key, statement_text.encode())).decode()}\n"
        for name, key, at in approvals)
    signer = "sha256:" + hashlib.sha256(b"kekd audit key").hexdigest()
    return (f"kekd transcript v1\nceremony: {CEREMONY_ID}\nsigner: {signer}\n--- statement\n"
            f"{statement_text}--- operator-set\n{SET}--- approvals\n{lines}--- outcome\n"
            f"state: {state}\n{outcome}")


write("transcript", "executed", transcript(
    STATEMENTS["create-key"], "executed",
    [("alice", ALICE, "2026-11-23T10:05:00Z"), ("bob", BOB, "2026-11-23T10:07:00Z")],
    "finished-at: 2026-11-23T10:07:01Z\nresult: created key payments version 1\n"))
write("transcript", "open", transcript(STATEMENTS["rotate-key"], "open",
                                       [("bob", BOB, "2026-11-23T10:05:00Z")]))
write("transcript", "cancelled-set-operators", transcript(
    STATEMENTS["set-operators"], "cancelled", [],
    "finished-at: 2026-11-23T11:00:00Z\nresult: cancelled by admin\n"))
write("transcript", "operator-set", SET)

# --- sigv4: requests signed by botocore, as the AWS CLI and boto3 sign them ---------------------


def sigv4_seed(target, body, extra_headers=(), query=""):
    import datetime

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "https://kms.us-east-1.amazonaws.com/" + (("?" + query) if query else "")
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    headers.update(extra_headers)
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)

    class FixedClock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return datetime.datetime(2026, 11, 23, 10, 0, 0)

    with mock.patch("botocore.auth.datetime.datetime", FixedClock):
        SigV4Auth(Credentials("AKIDFUZZEXAMPLE", "fuzz-secret"), "kms", "us-east-1").add_auth(request)
    lines = ["POST", "/" + (("?" + query) if query else ""), request.headers["Authorization"],
             request.headers["X-Amz-Date"], "host:kms.us-east-1.amazonaws.com"]
    for name, value in request.headers.items():
        if name.lower() not in ("authorization", "x-amz-date"):
            lines.append(f"{name}:{value}")
    return "\n".join(lines) + "\n\n" + body


write("sigv4", "encrypt", sigv4_seed("TrentService.Encrypt",
                                     '{"KeyId":"alias/demo","Plaintext":"aGVsbG8="}'))
write("sigv4", "decrypt-body-hash", sigv4_seed(
    "TrentService.Decrypt", '{"CiphertextBlob":"AQRkZW1v"}',
    {"X-Amz-Content-SHA256": hashlib.sha256(b'{"CiphertextBlob":"AQRkZW1v"}').hexdigest()}))
write("sigv4", "query-and-spaces", sigv4_seed("TrentService.ListKeys", "{}",
                                              {"X-Custom": "  a   b  "}, "b=2&a=%20x&a=1"))
write("sigv4", "bearer-token", "POST\n/\nBearer abc.def\n20261123T100000Z\nhost:h\n\n{}")
write("sigv4", "no-authorization", "GET\n/?X-Amz-Algorithm=AWS4-HMAC-SHA256\n\n\nhost:h\n\n")

# --- json_request: the first byte picks datakey, wrap, unwrap, rewrap ---------------------------
DOC_B64 = base64.b64encode(DOC_CIPHERTEXT).decode()
JSON_SEEDS = {
    "datakey": b'\x00{"bytes": 32, "context": {"tenant": "acme"}}',
    "datakey-no-plaintext": b'\x00{"bytes": 16, "plaintext": false}',
    "wrap": b'\x01{"plaintext": "AAECAwQFBgcICQoLDA0ODw==", "context": {"tenant": "acme"}}',
    "wrap-batch": b'\x01{"items": [{"plaintext": "aGVsbG8="}, {"plaintext": "***"}]}',
    "unwrap": b'\x02{"ciphertext": "@CT@"}',
    "unwrap-context": b'\x02{"ciphertext": "@CTX@", "context": {"tenant": "acme"}}',
    "unwrap-docs-example": b'\x02{"ciphertext": "' + DOC_B64.encode() + b'"}',
    "rewrap": b'\x03{"ciphertext": "@CT@"}',
    "rewrap-batch": (b'\x03{"items": [{"ciphertext": "@CTX@", "context": {"tenant": "acme"}}, '
                     b'{"ciphertext": "@CT@", "context": {"tenant": "x"}}]}'),
    "unknown-member": b'\x01{"plaintext": "aGVsbG8=", "contxt": {}}',
}
for name, body in JSON_SEEDS.items():
    write("json_request", name, body)

# --- config: the example config and variants ---------------------------------------------------
example = pathlib.Path(__file__).resolve().parents[2] / "hsm-config" / "kekd.example.toml"
write("config", "example", example.read_bytes())
write("config", "minimal", '[hsm]\npin_env = "KEKD_HSM_PIN"\n')
write("config", "tls-ipv6", '[server]\nlisten = "[::1]:8443"\ntls_cert = "tls/cert.pem"\n'
      'tls_key = "tls/key.pem"\nclient_ca = "/etc/ca.pem"\nread_timeout = "5s"\n'
      '[hsm]\npin_file = "pin"\nsessions = 4\n[ceremony]\nttl = "2h"\nmin_destroy_delay = "1d"\n'
      'default_destroy_delay = "30d"\n[audit]\nmode = "async"\n'
      '[kms]\nregion = "eu-west-3"\naccount = "123456789012"\n[log]\nlevel = "debug"\n')
write("config", "bad-plaintext-public", '[server]\nlisten = "0.0.0.0:8200"\n')
write("config", "bad-toml", '[server\nlisten = 1\n')

print(f"make_seeds: wrote the seed corpora under {CORPUS}", file=sys.stderr)
