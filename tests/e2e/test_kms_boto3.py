"""The AWS KMS-compatible API through boto3 (issue 6, DESIGN §8): Debian's python3-boto3 with only
endpoint_url pointed at kekd, the exception classes it models, Signature V4 refusals made with
botocore's own signer and sent by hand, and the audit records all of it leaves.
"""
import datetime
import json
import os
import re
import sys
import unittest
from unittest import mock

import boto3
import botocore.exceptions

sys.path.insert(0, os.path.dirname(__file__))
from kms_e2e import (ACCOUNT, ALL, REGION, alias_arn, b64, key_arn, kms_client, send, sign_kms,  # noqa: E402
                     split_token, unb64, utcnow)
from kekd_e2e import Deployment, E2ETest  # noqa: E402

CONTEXT = {"tenant": "acme", "purpose": "card"}
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")


class KmsBoto3(E2ETest):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.d = Deployment().start()
        try:
            cls.d.ceremony("create-key", "demo")
            cls.d.ceremony("create-key", "other")
            cls.token = cls.d.client([{"key": "*", "operations": ALL}])
            cls.client_id, cls.secret = split_token(cls.token)
            cls.ids = {name: cls.d.admin("GET", f"/v1/keys/{name}").json()["id"] for name in ("demo", "other")}
            cls.kms = kms_client(cls.d, cls.token)
        except BaseException:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.kms.close()
        cls.d.close()

    # --- helpers ----------------------------------------------------------------------------------
    def assertRequestId(self, response):
        """AWS's x-amzn-RequestId is there, is what botocore reports, and is kekd's request id."""
        metadata = response["ResponseMetadata"]
        headers = metadata["HTTPHeaders"]
        self.assertRegex(metadata["RequestId"], REQUEST_ID)
        self.assertEqual(headers["x-amzn-requestid"], metadata["RequestId"])
        self.assertEqual(headers["x-request-id"], metadata["RequestId"])
        self.assertEqual(metadata["RetryAttempts"], 0)
        self.assertEqual(headers["content-type"], "application/x-amz-json-1.1")
        return metadata["RequestId"]

    def assertKmsError(self, context, code, message=None):
        """The ClientError of an assertRaises context: this AWS error type, HTTP 400, a request id."""
        error = context.exception.response
        self.assertEqual(error["Error"]["Code"], code, error)
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], 400, error)
        if message is not None:
            self.assertEqual(error["Error"]["Message"], message)
        return self.assertRequestId(error)

    def client_kms(self, grants):
        """A new client with these grants: its token and a boto3 KMS client signing as it."""
        token = self.d.client(grants)
        return token, self.boto3_client(token)

    def boto3_client(self, token):
        kms = kms_client(self.d, token)
        self.addCleanup(kms.close)
        return kms

    def raw(self, target, body, **kwargs):
        """A request signed with this class's client credential unless told otherwise, sent as is."""
        kwargs.setdefault("access_key", self.client_id)
        kwargs.setdefault("secret", self.secret)
        return send(*sign_kms(self.d.addr, target, body, **kwargs))

    def assertRawError(self, response, code, message_pattern=None):
        self.assertEqual(response.status, 400, response.body)
        self.assertEqual(response.headers["content-type"], "application/x-amz-json-1.1")
        body = response.json()
        self.assertEqual(body["__type"], code, response.body)
        if message_pattern is not None:
            self.assertRegex(body["message"], message_pattern)
        self.assertRegex(response.headers["x-amzn-requestid"], REQUEST_ID)
        return response.headers["x-amzn-requestid"]

    def audit_records(self):
        """Every record of the log (GET /v1/audit with the admin credential, paged)."""
        records, after = [], 0
        while True:
            page = self.d.admin("GET", f"/v1/audit?after={after}&limit=1000")
            self.assertEqual(page.status, 200, page.body)
            page = page.json()
            if not page["entries"]:
                return records
            records.extend(e for e in page["entries"] if e["type"] == "record")
            after = page["next"]

    # --- what works -------------------------------------------------------------------------------
    def test_blog_style_code_works_unchanged(self):
        """The code of AWS's examples, with only endpoint_url added; credentials from the environment."""
        env = {"AWS_ACCESS_KEY_ID": self.client_id, "AWS_SECRET_ACCESS_KEY": self.secret,
               "AWS_DEFAULT_REGION": "us-east-1"}
        with mock.patch.dict(os.environ, env):
            kms = boto3.client("kms", endpoint_url=self.d.addr)
        self.addCleanup(kms.close)
        dek = os.urandom(32)
        ciphertext = kms.encrypt(KeyId="alias/demo", Plaintext=dek)["CiphertextBlob"]
        self.assertIsInstance(ciphertext, bytes)
        plaintext = kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"]
        self.assertEqual(plaintext, dek)

    def test_encrypt_decrypt_with_and_without_context(self):
        for context in ({}, CONTEXT, {"é": "ü", "empty": ""}):
            pt = os.urandom(1 + len(context) * 100)
            args = {"EncryptionContext": context} if context else {}
            out = self.kms.encrypt(KeyId="alias/demo", Plaintext=pt, **args)
            self.assertRequestId(out)
            self.assertEqual(out["ResponseMetadata"]["HTTPStatusCode"], 200)
            del out["ResponseMetadata"]
            self.assertEqual(out, {"CiphertextBlob": out["CiphertextBlob"], "KeyId": key_arn(self.ids["demo"]),
                                   "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
            back = self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"], **args)
            self.assertRequestId(back)
            del back["ResponseMetadata"]
            self.assertEqual(back, {"KeyId": key_arn(self.ids["demo"]), "Plaintext": pt,
                                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
            # KeyId on Decrypt, in each of its forms, and the algorithm named explicitly
            for key_id in (self.ids["demo"], alias_arn("demo")):
                again = self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"], KeyId=key_id,
                                         EncryptionAlgorithm="SYMMETRIC_DEFAULT", **args)
                self.assertEqual(again["Plaintext"], pt)
        # 4096 bytes is AWS's limit and kekd's
        big = os.urandom(4096)
        blob = self.kms.encrypt(KeyId=key_arn(self.ids["other"]), Plaintext=big)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], big)

    def test_re_encrypt(self):
        pt = os.urandom(32)
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=pt, EncryptionContext=CONTEXT)["CiphertextBlob"]
        # same key, same context: the native rewrap
        same = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=CONTEXT,
                                   DestinationKeyId="alias/demo", DestinationEncryptionContext=CONTEXT)
        self.assertRequestId(same)
        del same["ResponseMetadata"]
        self.assertEqual(same, {"CiphertextBlob": same["CiphertextBlob"], "SourceKeyId": key_arn(self.ids["demo"]),
                                "KeyId": key_arn(self.ids["demo"]), "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        self.assertEqual(self.kms.decrypt(CiphertextBlob=same["CiphertextBlob"],
                                          EncryptionContext=CONTEXT)["Plaintext"], pt)
        # another key and another context, SourceKeyId given
        moved = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=CONTEXT,
                                    SourceKeyId="alias/demo", DestinationKeyId=self.ids["other"],
                                    DestinationEncryptionContext={"tenant": "other"})
        self.assertEqual((moved["SourceKeyId"], moved["KeyId"]),
                         (key_arn(self.ids["demo"]), key_arn(self.ids["other"])))
        back = self.kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"tenant": "other"})
        self.assertEqual((back["KeyId"], back["Plaintext"]), (key_arn(self.ids["other"]), pt))
        with self.assertRaises(self.kms.exceptions.InvalidCiphertextException) as c:
            self.kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext=CONTEXT)
        self.assertKmsError(c, "InvalidCiphertextException")
        # the source context must be the one the blob was made with
        with self.assertRaises(self.kms.exceptions.InvalidCiphertextException) as c:
            self.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/other")
        self.assertKmsError(c, "InvalidCiphertextException")
        # SourceKeyId of another key
        with self.assertRaises(self.kms.exceptions.IncorrectKeyException) as c:
            self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=CONTEXT, SourceKeyId="alias/other",
                                DestinationKeyId="alias/other")
        self.assertKmsError(c, "IncorrectKeyException")

    def test_data_keys_and_random(self):
        dk = self.kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_256", EncryptionContext=CONTEXT)
        self.assertRequestId(dk)
        self.assertEqual(set(dk), {"CiphertextBlob", "Plaintext", "KeyId", "ResponseMetadata"})
        self.assertEqual((dk["KeyId"], len(dk["Plaintext"])), (key_arn(self.ids["demo"]), 32))
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"],
                                          EncryptionContext=CONTEXT)["Plaintext"], dk["Plaintext"])
        self.assertEqual(len(self.kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_128")["Plaintext"]), 16)
        for n in (1, 48, 1024):
            dk = self.kms.generate_data_key(KeyId=self.ids["demo"], NumberOfBytes=n)
            self.assertEqual(len(dk["Plaintext"]), n)
            self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"], dk["Plaintext"])
        hidden = self.kms.generate_data_key_without_plaintext(KeyId="alias/other", NumberOfBytes=24,
                                                              EncryptionContext=CONTEXT)
        self.assertRequestId(hidden)
        self.assertEqual(set(hidden), {"CiphertextBlob", "KeyId", "ResponseMetadata"})
        self.assertEqual(hidden["KeyId"], key_arn(self.ids["other"]))
        back = self.kms.decrypt(CiphertextBlob=hidden["CiphertextBlob"], EncryptionContext=CONTEXT)
        self.assertEqual((back["KeyId"], len(back["Plaintext"])), (key_arn(self.ids["other"]), 24))
        randoms = [self.kms.generate_random(NumberOfBytes=n) for n in (1, 32, 1024)]
        self.assertEqual([len(r["Plaintext"]) for r in randoms], [1, 32, 1024])
        self.assertEqual([set(r) for r in randoms], [{"Plaintext", "ResponseMetadata"}] * 3)
        self.assertNotEqual(randoms[2]["Plaintext"], bytes(1024))

    def test_describe_and_list(self):
        uuid = self.ids["demo"]
        arns = set()
        for key_id in ("alias/demo", uuid, key_arn(uuid), alias_arn("demo")):
            out = self.kms.describe_key(KeyId=key_id)
            self.assertRequestId(out)
            metadata = out["KeyMetadata"]
            self.assertIsInstance(metadata.pop("CreationDate"), datetime.datetime)
            self.assertEqual(metadata, {
                "AWSAccountId": ACCOUNT, "KeyId": uuid, "Arn": key_arn(uuid), "Enabled": True,
                "Description": "kekd key 'demo'", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled",
                "Origin": "AWS_KMS", "KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
                "MultiRegion": False}, key_id)
            arns.add(metadata["Arn"])
        self.assertEqual(arns, {f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid}"})

        expected = [{"KeyId": self.ids[n], "KeyArn": key_arn(self.ids[n])} for n in ("demo", "other")]
        first = self.kms.list_keys(Limit=1)
        self.assertRequestId(first)
        self.assertEqual((first["Keys"], first["Truncated"]), (expected[:1], True))
        second = self.kms.list_keys(Limit=1, Marker=first["NextMarker"])
        self.assertEqual((second["Keys"], second["Truncated"]), (expected[1:], False))
        self.assertNotIn("NextMarker", second)
        for args in ({}, {"Limit": 2}, {"Limit": 1000}):
            whole = self.kms.list_keys(**args)
            self.assertEqual((whole["Keys"], whole["Truncated"]), (expected, False), args)
            self.assertNotIn("NextMarker", whole)
        paged = self.kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}).build_full_result()
        self.assertEqual(paged["Keys"], expected)

        aliases = self.kms.list_aliases()
        self.assertRequestId(aliases)
        self.assertFalse(aliases["Truncated"])
        self.assertEqual([{k: a[k] for k in ("AliasName", "AliasArn", "TargetKeyId")} for a in aliases["Aliases"]],
                         [{"AliasName": f"alias/{n}", "AliasArn": alias_arn(n), "TargetKeyId": self.ids[n]}
                          for n in ("demo", "other")])
        first = self.kms.list_aliases(Limit=1)
        self.assertEqual(([a["AliasName"] for a in first["Aliases"]], first["Truncated"]), (["alias/demo"], True))
        second = self.kms.list_aliases(Limit=1, Marker=first["NextMarker"])
        self.assertEqual(([a["AliasName"] for a in second["Aliases"]], second["Truncated"]), (["alias/other"], False))
        self.assertNotIn("NextMarker", second)
        only = self.kms.list_aliases(KeyId=key_arn(self.ids["other"]))["Aliases"]
        self.assertEqual([a["AliasName"] for a in only], ["alias/other"])
        # a client sees the keys it holds a describe grant for, as on GET /v1/keys
        _, limited = self.client_kms([{"key": "other", "operations": ["describe"]}])
        self.assertEqual(limited.list_keys()["Keys"], expected[1:])
        self.assertEqual([a["AliasName"] for a in limited.list_aliases()["Aliases"]], ["alias/other"])

    # --- AWS's error types ------------------------------------------------------------------------
    def test_unknown_keys_are_not_found(self):
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=b"x")["CiphertextBlob"]
        uuid = self.ids["demo"]
        for key_id in ("alias/nope", "00000000-1111-2222-3333-444444444444", "nope",
                       f"arn:aws:kms:{REGION}:111122223333:key/{uuid}",
                       f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{uuid}",
                       f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/demo",
                       f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/nope"):
            with self.assertRaises(self.kms.exceptions.NotFoundException) as c:
                self.kms.encrypt(KeyId=key_id, Plaintext=b"x")
            self.assertKmsError(c, "NotFoundException")
            self.assertIn(key_id, c.exception.response["Error"]["Message"])
            with self.assertRaises(self.kms.exceptions.NotFoundException) as c:
                self.kms.describe_key(KeyId=key_id)
            self.assertKmsError(c, "NotFoundException")
        for call in (lambda: self.kms.generate_data_key(KeyId="alias/nope", KeySpec="AES_256"),
                     lambda: self.kms.generate_data_key_without_plaintext(KeyId="alias/nope", KeySpec="AES_256"),
                     lambda: self.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/nope"),
                     lambda: self.kms.decrypt(CiphertextBlob=blob, KeyId="alias/nope")):
            with self.assertRaises(self.kms.exceptions.NotFoundException) as c:
                call()
            self.assertKmsError(c, "NotFoundException")

    def test_wrong_context_and_tampered_blobs_are_invalid_ciphertext(self):
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=os.urandom(32),
                                EncryptionContext=CONTEXT)["CiphertextBlob"]
        flipped_tail = blob[:-1] + bytes([blob[-1] ^ 0x01])
        flipped_body = blob[:20] + bytes([blob[20] ^ 0x80]) + blob[21:]
        other_name = blob[:2] + b"demp" + blob[6:]  # a key kekd does not hold
        cases = [(blob, {"tenant": "acme"}), (blob, {}), (blob, dict(CONTEXT, purpose="Card")),
                 (flipped_tail, CONTEXT), (flipped_body, CONTEXT), (other_name, CONTEXT),
                 (b"\x01\x04demo", CONTEXT), (os.urandom(64), {})]
        messages = set()
        for ciphertext, context in cases:
            with self.assertRaises(self.kms.exceptions.InvalidCiphertextException) as c:
                self.kms.decrypt(CiphertextBlob=ciphertext, EncryptionContext=context)
            self.assertKmsError(c, "InvalidCiphertextException")
            messages.add(c.exception.response["Error"]["Message"])
        # a wrong context and a tampered blob cannot be told apart
        self.assertEqual(len(messages), 1, messages)

    def test_decrypt_with_the_key_id_of_another_key_is_incorrect_key(self):
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=b"dek")["CiphertextBlob"]
        for key_id in ("alias/other", self.ids["other"], key_arn(self.ids["other"])):
            with self.assertRaises(self.kms.exceptions.IncorrectKeyException) as c:
                self.kms.decrypt(CiphertextBlob=blob, KeyId=key_id)
            self.assertKmsError(c, "IncorrectKeyException")

    def test_grants_map_to_operations(self):
        """Encrypt=wrap, Decrypt=unwrap, ReEncrypt=rewrap on both keys, GenerateDataKey*=datakey,
        DescribeKey=describe: the grant alone allows it, every other grant together does not."""
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=b"k" * 16)["CiphertextBlob"]
        calls = {
            "wrap": lambda kms: kms.encrypt(KeyId="alias/demo", Plaintext=b"k" * 16),
            "unwrap": lambda kms: kms.decrypt(CiphertextBlob=blob),
            "rewrap": lambda kms: kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/demo"),
            "datakey": lambda kms: kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_256"),
            "describe": lambda kms: kms.describe_key(KeyId="alias/demo"),
        }
        for grant, call in calls.items():
            _, granted = self.client_kms([{"key": "demo", "operations": [grant]}])
            self.assertEqual(call(granted)["ResponseMetadata"]["HTTPStatusCode"], 200, grant)
            _, others = self.client_kms([{"key": "demo", "operations": [o for o in ALL if o != grant]},
                                         {"key": "other", "operations": ALL}])
            with self.assertRaises(others.exceptions.ClientError) as c:
                call(others)
            self.assertKmsError(c, "AccessDeniedException")
        _, datakey_only = self.client_kms([{"key": "demo", "operations": ["datakey"]}])
        self.assertNotIn("Plaintext", datakey_only.generate_data_key_without_plaintext(KeyId="alias/demo",
                                                                                        NumberOfBytes=32))
        # ReEncrypt needs rewrap on the destination too
        _, source_only = self.client_kms([{"key": "demo", "operations": ["rewrap"]},
                                          {"key": "other", "operations": ["wrap", "unwrap", "datakey", "describe"]}])
        with self.assertRaises(source_only.exceptions.ClientError) as c:
            source_only.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/other")
        self.assertKmsError(c, "AccessDeniedException")
        # rewrap on both keys alone would be unwrap across keys: moving a blob to another key or
        # context also needs unwrap on the source and wrap on the destination
        _, both = self.client_kms([{"key": "demo", "operations": ["rewrap"]},
                                   {"key": "other", "operations": ["rewrap", "unwrap"]}])
        for destination, context in (("alias/other", {}), ("alias/demo", {"tenant": "evil"})):
            with self.assertRaises(both.exceptions.ClientError) as c:
                both.re_encrypt(CiphertextBlob=blob, DestinationKeyId=destination,
                                DestinationEncryptionContext=context)
            self.assertKmsError(c, "AccessDeniedException")
        self.assertEqual(both.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/demo")["KeyId"],
                         key_arn(self.ids["demo"]))
        _, full = self.client_kms([{"key": "demo", "operations": ["rewrap", "unwrap"]},
                                   {"key": "other", "operations": ["rewrap", "wrap"]}])
        self.assertEqual(full.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/other")["KeyId"],
                         key_arn(self.ids["other"]))
        # a refusal does not tell whether the blob's key exists, nor its name
        forged = b"\x01\x08payments\x00\x00\x00\x01" + bytes(48)
        with self.assertRaises(both.exceptions.ClientError) as c:
            both.decrypt(CiphertextBlob=forged)
        self.assertKmsError(c, "AccessDeniedException")
        self.assertNotIn("payments", c.exception.response["Error"]["Message"])
        # a new client can do nothing with a key
        _, nothing = self.client_kms([])
        with self.assertRaises(nothing.exceptions.ClientError) as c:
            nothing.encrypt(KeyId="alias/demo", Plaintext=b"x")
        self.assertKmsError(c, "AccessDeniedException")
        self.assertEqual(nothing.list_keys()["Keys"], [])
        # GenerateRandom names no key, but needs a datakey grant on some key
        with self.assertRaises(nothing.exceptions.ClientError) as c:
            nothing.generate_random(NumberOfBytes=16)
        self.assertKmsError(c, "AccessDeniedException")
        self.assertEqual(len(datakey_only.generate_random(NumberOfBytes=16)["Plaintext"]), 16)
        # a marker kekd did not issue
        with self.assertRaises(self.kms.exceptions.InvalidMarkerException):
            self.kms.list_keys(Marker="zzz")

    def test_credentials_refused(self):
        # a wrong secret: no modelled class in botocore, the code says it
        wrong = self.boto3_client(self.client_id + ".not-the-secret")
        with self.assertRaises(botocore.exceptions.ClientError) as c:
            wrong.encrypt(KeyId="alias/demo", Plaintext=b"x")
        self.assertKmsError(c, "InvalidSignatureException", MISMATCH)
        # access key ids kekd does not know, shaped like a client id or not
        for access_key in ("cli_" + "0" * 20, "AKIAIOSFODNN7EXAMPLE"):
            unknown = self.boto3_client(access_key + "." + self.secret)
            with self.assertRaises(botocore.exceptions.ClientError) as c:
                unknown.encrypt(KeyId="alias/demo", Plaintext=b"x")
            self.assertKmsError(c, "UnrecognizedClientException",
                                "The security token included in the request is invalid.")
        # a deleted client, which signed successfully before
        token, kms = self.client_kms([{"key": "demo", "operations": ["describe"]}])
        self.assertEqual(kms.describe_key(KeyId="alias/demo")["KeyMetadata"]["KeyId"], self.ids["demo"])
        self.assertEqual(self.d.admin("DELETE", f"/v1/clients/{split_token(token)[0]}").status, 200)
        with self.assertRaises(botocore.exceptions.ClientError) as c:
            kms.describe_key(KeyId="alias/demo")
        self.assertKmsError(c, "UnrecognizedClientException")

    def test_unsupported_and_unknown_operations(self):
        with self.assertRaises(self.kms.exceptions.UnsupportedOperationException) as c:
            self.kms.create_key(Description="x")
        self.assertKmsError(c, "UnsupportedOperationException")
        self.assertIn("ceremon", c.exception.response["Error"]["Message"])
        with self.assertRaises(self.kms.exceptions.UnsupportedOperationException) as c:
            self.kms.schedule_key_deletion(KeyId=self.ids["demo"], PendingWindowInDays=7)
        self.assertKmsError(c, "UnsupportedOperationException")
        self.assertIn("ceremon", c.exception.response["Error"]["Message"])
        with self.assertRaises(self.kms.exceptions.UnsupportedOperationException) as c:
            self.kms.sign(KeyId=self.ids["demo"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
        self.assertKmsError(c, "UnsupportedOperationException")
        self.assertEqual(self.kms.describe_key(KeyId="alias/demo")["KeyMetadata"]["KeyState"], "Enabled")
        self.assertEqual(len(self.kms.list_keys()["Keys"]), 2)
        self.assertRawError(self.raw("Frobnicate", {}), "UnknownOperationException")

    def test_validation(self):
        cases = [
            lambda: self.kms.encrypt(KeyId="alias/demo", Plaintext=b"x" * 4097),
            lambda: self.kms.generate_data_key(KeyId="alias/demo", NumberOfBytes=1025),
            lambda: self.kms.generate_data_key_without_plaintext(KeyId="alias/demo", NumberOfBytes=1025),
            lambda: self.kms.generate_random(NumberOfBytes=1025),
            lambda: self.kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_256", NumberOfBytes=32),
            lambda: self.kms.generate_data_key(KeyId="alias/demo"),
            lambda: self.kms.generate_random(),
            lambda: self.kms.encrypt(KeyId="alias/demo", Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
            lambda: self.kms.describe_key(KeyId="alias/" + "d" * 2043),
            lambda: self.kms.list_keys(Limit=1001),
        ]
        for i, call in enumerate(cases):
            with self.assertRaises(botocore.exceptions.ClientError) as c:
                call()
            self.assertKmsError(c, "ValidationException")
            self.assertTrue(c.exception.response["Error"]["Message"], i)
        with self.assertRaises(botocore.exceptions.ClientError) as c:
            self.kms.encrypt(KeyId="alias/demo", Plaintext=b"x" * 4097)
        self.assertIn("'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096",
                      c.exception.response["Error"]["Message"])

    def test_members_of_the_wrong_json_type_and_empty_blobs(self):
        """What botocore never sends, sent raw: a member of the wrong JSON type is a
        SerializationException, a value outside its constraints a ValidationException (AWS's JSON
        protocol, and the rule kms_members.cc states)."""
        base = {"KeyId": "alias/demo", "Plaintext": b64(b"x")}
        cases = {
            "KeyId a number": ("Encrypt", {"KeyId": 5, "Plaintext": b64(b"x")}, "SerializationException"),
            "Plaintext not base64": ("Encrypt", dict(base, Plaintext="%%%"), "SerializationException"),
            "EncryptionContext a string": ("Encrypt", dict(base, EncryptionContext="tenant=acme"),
                                           "SerializationException"),
            "EncryptionContext value a number": ("Encrypt", dict(base, EncryptionContext={"tenant": 1}),
                                                 "SerializationException"),
            "DryRun a string": ("Encrypt", dict(base, DryRun="yes"), "SerializationException"),
            "GrantTokens a string": ("Encrypt", dict(base, GrantTokens="token"), "SerializationException"),
            "NumberOfBytes a string": ("GenerateDataKey", {"KeyId": "alias/demo", "NumberOfBytes": "32"},
                                       "SerializationException"),
            "Limit a string": ("ListKeys", {"Limit": "1"}, "SerializationException"),
            "body not JSON": ("Encrypt", b"not json", "SerializationException"),
            "body an array": ("Encrypt", b"[]", "SerializationException"),
            # an empty blob is valid base64 of length 0, below the minimum of 1
            "Plaintext empty": ("Encrypt", dict(base, Plaintext=""), "ValidationException"),
            "CiphertextBlob empty": ("Decrypt", {"CiphertextBlob": ""}, "ValidationException"),
        }
        answers = {}
        for name, (target, body, _) in cases.items():
            response = self.raw(target, body)
            self.assertEqual(response.status, 400, (name, response.body))
            self.assertRegex(response.headers["x-amzn-requestid"], REQUEST_ID)
            answers[name] = response.json()["__type"]
        self.assertEqual(answers, {name: expected for name, (_, _, expected) in cases.items()})

    def test_dry_run(self):
        """DryRun (newer than Debian's botocore 1.29, whose model lacks it) is added to the body that
        botocore serialized, before it signs: the request is otherwise the SDK's own."""
        def dry_run(params, **kwargs):
            body = json.loads(params["body"])
            body["DryRun"] = True
            params["body"] = json.dumps(body).encode()

        def client(grants):
            kms = self.client_kms(grants)[1]
            kms.meta.events.register("before-call.kms.*", dry_run)
            return kms

        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=b"k" * 16)["CiphertextBlob"]
        allowed, denied = client([{"key": "demo", "operations": ALL}]), client([{"key": "other", "operations": ALL}])
        calls = [lambda kms: kms.encrypt(KeyId="alias/demo", Plaintext=b"k" * 16),
                 lambda kms: kms.decrypt(CiphertextBlob=blob),
                 lambda kms: kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/demo"),
                 lambda kms: kms.generate_data_key(KeyId="alias/demo", KeySpec="AES_256"),
                 lambda kms: kms.generate_data_key_without_plaintext(KeyId="alias/demo", KeySpec="AES_256")]
        for call in calls:
            with self.assertRaises(botocore.exceptions.ClientError) as c:
                call(allowed)
            self.assertKmsError(c, "DryRunOperationException")
            # a dry run checks the permission first
            with self.assertRaises(botocore.exceptions.ClientError) as c:
                call(denied)
            self.assertKmsError(c, "AccessDeniedException")

    # --- Signature V4, request by request -----------------------------------------------------------
    def test_signature_refusals(self):
        body = {"KeyId": "alias/demo", "Plaintext": b64(b"secret")}
        # the same request signed properly passes
        ok = self.raw("Encrypt", body)
        self.assertEqual(ok.status, 200, ok.body)
        self.assertEqual(ok.json()["KeyId"], key_arn(self.ids["demo"]))

        self.assertRawError(self.raw("Encrypt", body, secret="another-secret"), "InvalidSignatureException",
                            "^" + re.escape(MISMATCH) + "$")
        self.assertRawError(self.raw("Encrypt", body, region="eu-west-1"), "InvalidSignatureException",
                            r"Credential should be scoped to a valid region, not 'eu-west-1'")
        self.assertRawError(self.raw("Encrypt", body, service="s3"), "InvalidSignatureException",
                            r"Credential should be scoped to correct service: 'kms'")

        now = utcnow()
        past = now - datetime.timedelta(minutes=10)
        self.assertRawError(self.raw("Encrypt", body, when=past), "InvalidSignatureException",
                            r"^Signature expired: " + past.strftime("%Y%m%dT%H%M%SZ") +
                            r" is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)$")
        future = now + datetime.timedelta(minutes=10)
        self.assertRawError(self.raw("Encrypt", body, when=future), "InvalidSignatureException",
                            r"^Signature not yet current: " + future.strftime("%Y%m%dT%H%M%SZ") +
                            r" is still later than \d{8}T\d{6}Z \(\d{8}T\d{6}Z \+ 5 min\.\)$")
        # within AWS's 5 minutes, either way
        for minutes in (-4, 4):
            skewed = self.raw("Encrypt", body, when=now + datetime.timedelta(minutes=minutes))
            self.assertEqual(skewed.status, 200, skewed.body)
            self.assertEqual(self.kms.decrypt(CiphertextBlob=unb64(skewed.json()["CiphertextBlob"]))["Plaintext"],
                             b"secret")

        # the body changed after signing
        url, headers, data = sign_kms(self.d.addr, "Encrypt", body, self.client_id, self.secret)
        changed = data.replace(b64(b"secret").encode(), b64(b"secreT").encode())
        self.assertNotEqual(changed, data)
        self.assertRawError(send(url, headers, changed), "InvalidSignatureException", "^" + re.escape(MISMATCH) + "$")
        # a signed header changed after signing
        self.assertRawError(send(url, dict(headers, **{"X-Amz-Target": "TrentService.Decrypt"}), data),
                            "InvalidSignatureException")
        # no Authorization at all
        unsigned = {k: v for k, v in headers.items() if k != "Authorization"}
        self.assertRawError(send(url, unsigned, data), "MissingAuthenticationTokenException",
                            "^Request is missing Authentication Token$")
        # an Authorization without SignedHeaders
        malformed = re.sub(r"SignedHeaders=[^,]*, ", "", headers["Authorization"])
        self.assertNotIn("SignedHeaders", malformed)
        self.assertRawError(send(url, dict(headers, Authorization=malformed), data), "IncompleteSignatureException",
                            r"Authorization header requires 'SignedHeaders' parameter\.")
        # a native bearer token is not a signature
        self.assertRawError(send(url, dict(unsigned, Authorization="Bearer " + self.token), data),
                            "IncompleteSignatureException")

    # --- the audit log ------------------------------------------------------------------------------
    def test_audit_records_of_kms_requests(self):
        token, kms = self.client_kms([{"key": "demo", "operations": ["wrap", "unwrap", "rewrap", "datakey"]},
                                      {"key": "other", "operations": ["rewrap", "wrap"]}])
        client_id, secret = split_token(token)
        out = kms.encrypt(KeyId="alias/demo", Plaintext=b"audited")
        wrap_id = self.assertRequestId(out)
        unwrap_id = self.assertRequestId(kms.decrypt(CiphertextBlob=out["CiphertextBlob"]))
        rewrap_id = self.assertRequestId(kms.re_encrypt(CiphertextBlob=out["CiphertextBlob"],
                                                        DestinationKeyId="alias/other"))
        datakey_id = self.assertRequestId(kms.generate_data_key_without_plaintext(KeyId="alias/demo",
                                                                                  NumberOfBytes=16))
        with self.assertRaises(kms.exceptions.ClientError) as c:
            kms.generate_data_key(KeyId="alias/other", NumberOfBytes=16)
        denied_id = self.assertKmsError(c, "AccessDeniedException")
        with self.assertRaises(kms.exceptions.ClientError) as c:
            kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"a": "b"})
        invalid_id = self.assertKmsError(c, "InvalidCiphertextException")
        body = {"KeyId": "alias/demo", "Plaintext": b64(b"x")}
        refused = {
            self.assertRawError(self.raw("Encrypt", body, access_key=client_id, secret="wrong"),
                                "InvalidSignatureException"): client_id,
            self.assertRawError(self.raw("Decrypt", body, access_key=client_id, secret=secret, region="eu-west-1"),
                                "InvalidSignatureException"): client_id,
            self.assertRawError(self.raw("Encrypt", body, access_key=client_id, secret=secret,
                                         when=utcnow() - datetime.timedelta(minutes=10)),
                                "InvalidSignatureException"): client_id,
            self.assertRawError(self.raw("Encrypt", body, access_key="AKIAIOSFODNN7EXAMPLE", secret=secret),
                                "UnrecognizedClientException"): "",
        }
        url, headers, data = sign_kms(self.d.addr, "Encrypt", body, client_id, secret)
        refused[self.assertRawError(send(url, {k: v for k, v in headers.items() if k != "Authorization"}, data),
                                    "MissingAuthenticationTokenException")] = ""

        records = self.audit_records()
        by_request = {}
        for r in records:
            by_request.setdefault(r["request_id"], []).append(r)

        def only(request_id):
            self.assertEqual(len(by_request.get(request_id, [])), 1, (request_id, by_request.get(request_id)))
            r = dict(by_request[request_id][0])
            for member in ("seq", "time", "prev", "hash", "request_id", "type"):
                r.pop(member, None)
            return r

        self.assertEqual(only(wrap_id), {"action": "key.wrap", "principal": client_id, "key": "demo", "version": 1,
                                         "subject": None, "outcome": "ok", "error": None})
        self.assertEqual(only(unwrap_id), {"action": "key.unwrap", "principal": client_id, "key": "demo",
                                           "version": 1, "subject": None, "outcome": "ok", "error": None})
        self.assertEqual(only(rewrap_id), {"action": "key.rewrap", "principal": client_id, "key": "other",
                                           "version": 1, "subject": "from key demo", "outcome": "ok", "error": None})
        self.assertEqual(only(datakey_id), {"action": "key.datakey", "principal": client_id, "key": "demo",
                                            "version": 1, "subject": None, "outcome": "ok", "error": None})
        self.assertEqual(only(denied_id), {"action": "key.datakey", "principal": client_id, "key": "other",
                                           "version": None, "subject": None, "outcome": "error",
                                           "error": "permission_denied"})
        self.assertEqual(only(invalid_id), {"action": "key.unwrap", "principal": client_id, "key": "demo",
                                            "version": None, "subject": None, "outcome": "error",
                                            "error": "invalid_ciphertext"})
        for request_id, principal in refused.items():
            record = only(request_id)
            self.assertEqual((record["action"], record["principal"], record["key"], record["version"],
                              record["outcome"], record["error"]),
                             ("auth.failure", principal, None, None, "error", "unauthenticated"), request_id)
            self.assertIn(record["subject"], ("POST / Encrypt", "POST / Decrypt"))
        # never a secret, a plaintext or a ciphertext
        dump = json.dumps(records)
        for forbidden in (secret, b64(b"audited"), b64(out["CiphertextBlob"]), "wrong"):
            self.assertNotIn(forbidden, dump)


class KmsConfiguredScope(E2ETest):
    """`[kms] region` and `account` in kekd.toml: the ARNs kekd answers with and accepts, and the
    region a signature must be scoped to."""

    def test_region_and_account_from_the_configuration(self):
        d = self.deployment(extra_toml='[kms]\nregion = "eu-central-1"\naccount = "123456789012"\n').start()
        d.ceremony("create-key", "demo")
        token = d.client([{"key": "demo", "operations": ALL}])
        uuid = d.admin("GET", "/v1/keys/demo").json()["id"]
        arn = f"arn:aws:kms:eu-central-1:123456789012:key/{uuid}"
        access_key, secret = split_token(token)
        kms = boto3.client("kms", endpoint_url=d.addr, region_name="eu-central-1", aws_access_key_id=access_key,
                           aws_secret_access_key=secret)
        self.addCleanup(kms.close)
        for key_id in ("alias/demo", uuid, arn, "arn:aws:kms:eu-central-1:123456789012:alias/demo"):
            metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
            self.assertEqual((metadata["Arn"], metadata["AWSAccountId"]), (arn, "123456789012"))
        self.assertEqual(kms.encrypt(KeyId=arn, Plaintext=b"x")["KeyId"], arn)
        self.assertEqual(kms.list_aliases()["Aliases"][0]["AliasArn"],
                         "arn:aws:kms:eu-central-1:123456789012:alias/demo")
        with self.assertRaises(kms.exceptions.NotFoundException):
            kms.describe_key(KeyId=key_arn(uuid))  # the default region and account name another key
        # a client signing for us-east-1 is refused
        us = kms_client(d, token)
        self.addCleanup(us.close)
        with self.assertRaises(botocore.exceptions.ClientError) as c:
            us.describe_key(KeyId="alias/demo")
        self.assertEqual(c.exception.response["Error"]["Code"], "InvalidSignatureException")
        self.assertIn("Credential should be scoped to a valid region, not 'us-east-1'",
                      c.exception.response["Error"]["Message"])


if __name__ == "__main__":
    unittest.main()
