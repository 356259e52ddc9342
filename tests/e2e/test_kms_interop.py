"""The KMS API and the native API are two faces of one keyring (issue 6, DESIGN §4, §8): a
CiphertextBlob is the native ciphertext, so what one API wraps the other unwraps, with the same
encryption context binding; a key's KMS identity (its UUID and ARN) survives rotation; a key whose
versions are all disabled is a disabled KMS key.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kms_e2e import ALL, b64, key_arn, kms_client, unb64  # noqa: E402
from kekd_e2e import Deployment, E2ETest  # noqa: E402

CONTEXT = {"tenant": "acme", "record": "42"}


class KmsInterop(E2ETest):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.d = Deployment().start()
        try:
            for name in ("demo", "other", "rotating", "retired"):
                cls.d.ceremony("create-key", name)
            cls.token = cls.d.client([{"key": "*", "operations": ALL}])
            cls.ids = {k["name"]: k["id"] for k in cls.d.admin("GET", "/v1/keys").json()["keys"]}
            cls.kms = kms_client(cls.d, cls.token)
        except BaseException:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.kms.close()
        cls.d.close()

    def native(self, key, operation, body):
        r = self.d.request("POST", f"/v1/keys/{key}/{operation}", body=body, token=self.token)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_kms_ciphertexts_unwrap_natively(self):
        for context in (None, CONTEXT):
            extra = {"EncryptionContext": context} if context else {}
            pt = os.urandom(37)
            blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=pt, **extra)["CiphertextBlob"]
            body = {"ciphertext": b64(blob), **({"context": context} if context else {})}
            self.assertEqual(self.native("demo", "unwrap", body), {"key": "demo", "version": 1, "plaintext": b64(pt)})
            dk = self.kms.generate_data_key(KeyId=key_arn(self.ids["demo"]), KeySpec="AES_256", **extra)
            body = {"ciphertext": b64(dk["CiphertextBlob"]), **({"context": context} if context else {})}
            self.assertEqual(unb64(self.native("demo", "unwrap", body)["plaintext"]), dk["Plaintext"])
            # the native rewrap takes it too, and KMS opens the result
            moved = self.native("demo", "rewrap", body)
            self.assertEqual((moved["key"], moved["version"]), ("demo", 1))
            self.assertEqual(self.kms.decrypt(CiphertextBlob=unb64(moved["ciphertext"]), **extra)["Plaintext"],
                             dk["Plaintext"])
        # the context binds across the two APIs
        blob = self.kms.encrypt(KeyId="alias/demo", Plaintext=b"bound", EncryptionContext=CONTEXT)["CiphertextBlob"]
        for context in (None, {"tenant": "acme"}):
            body = {"ciphertext": b64(blob), **({"context": context} if context else {})}
            r = self.d.request("POST", "/v1/keys/demo/unwrap", body=body, token=self.token)
            self.assertError(r, 400, "invalid_ciphertext")
        # the native API checks that the ciphertext is of the key in its path
        r = self.d.request("POST", "/v1/keys/other/unwrap", body={"ciphertext": b64(blob), "context": CONTEXT},
                           token=self.token)
        self.assertError(r, 400, "invalid_ciphertext")

    def test_native_ciphertexts_decrypt_through_kms(self):
        for context in (None, CONTEXT):
            extra = {"EncryptionContext": context} if context else {}
            pt = os.urandom(20)
            wrapped = self.native("demo", "wrap", {"plaintext": b64(pt), **({"context": context} if context else {})})
            back = self.kms.decrypt(CiphertextBlob=unb64(wrapped["ciphertext"]), **extra)
            self.assertEqual((back["KeyId"], back["Plaintext"]), (key_arn(self.ids["demo"]), pt))
            dk = self.native("demo", "datakey", {"bytes": 48, **({"context": context} if context else {})})
            self.assertEqual(self.kms.decrypt(CiphertextBlob=unb64(dk["ciphertext"]), **extra)["Plaintext"],
                             unb64(dk["plaintext"]))
            # ReEncrypt to another key, then back to the native API under that key
            moved = self.kms.re_encrypt(CiphertextBlob=unb64(wrapped["ciphertext"]), DestinationKeyId="alias/other",
                                        **({"SourceEncryptionContext": context,
                                            "DestinationEncryptionContext": context} if context else {}))
            body = {"ciphertext": b64(moved["CiphertextBlob"]), **({"context": context} if context else {})}
            self.assertEqual(self.native("other", "unwrap", body), {"key": "other", "version": 1, "plaintext": b64(pt)})
        wrapped = self.native("demo", "wrap", {"plaintext": b64(b"bound"), "context": CONTEXT})
        for context in ({}, {"tenant": "acme"}, dict(CONTEXT, extra="1")):
            with self.assertRaises(self.kms.exceptions.InvalidCiphertextException):
                self.kms.decrypt(CiphertextBlob=unb64(wrapped["ciphertext"]), EncryptionContext=context)

    def test_rotation_keeps_the_kms_identity(self):
        before = self.kms.describe_key(KeyId="alias/rotating")["KeyMetadata"]
        v1 = self.kms.encrypt(KeyId="alias/rotating", Plaintext=b"old dek", EncryptionContext=CONTEXT)
        self.assertEqual(unb64(self.native("rotating", "unwrap", {"ciphertext": b64(v1["CiphertextBlob"]),
                                                                  "context": CONTEXT})["plaintext"]), b"old dek")
        self.d.ceremony("rotate-key", "rotating")
        after = self.kms.describe_key(KeyId="alias/rotating")["KeyMetadata"]
        self.assertEqual(after, before)
        self.assertEqual(after["Arn"], key_arn(self.ids["rotating"]))
        v2 = self.kms.encrypt(KeyId=key_arn(self.ids["rotating"]), Plaintext=b"new dek")
        self.assertEqual(v2["KeyId"], v1["KeyId"])
        self.assertEqual(v2["CiphertextBlob"][:14], b"\x01\x08rotating\x00\x00\x00\x02")
        self.assertEqual(self.native("rotating", "unwrap", {"ciphertext": b64(v2["CiphertextBlob"])}),
                         {"key": "rotating", "version": 2, "plaintext": b64(b"new dek")})
        # the old ciphertext still opens, through both APIs; ReEncrypt moves it to the new version
        self.assertEqual(self.kms.decrypt(CiphertextBlob=v1["CiphertextBlob"], EncryptionContext=CONTEXT)["Plaintext"],
                         b"old dek")
        moved = self.kms.re_encrypt(CiphertextBlob=v1["CiphertextBlob"], SourceEncryptionContext=CONTEXT,
                                    DestinationKeyId="alias/rotating", DestinationEncryptionContext=CONTEXT)
        self.assertEqual((moved["SourceKeyId"], moved["KeyId"]), (v1["KeyId"], v1["KeyId"]))
        self.assertEqual(self.native("rotating", "unwrap", {"ciphertext": b64(moved["CiphertextBlob"]),
                                                            "context": CONTEXT}),
                         {"key": "rotating", "version": 2, "plaintext": b64(b"old dek")})

    def test_a_key_without_enabled_versions_is_a_disabled_kms_key(self):
        """AWS KMS answers DisabledException to every cryptographic operation on a disabled key
        (KMSInvalidStateException is for keys pending deletion or import)."""
        blob = self.kms.encrypt(KeyId="alias/retired", Plaintext=b"dek")["CiphertextBlob"]
        self.d.ceremony("disable-version", "retired", "--version", "1")
        metadata = self.kms.describe_key(KeyId="alias/retired")["KeyMetadata"]
        self.assertEqual((metadata["KeyState"], metadata["Enabled"]), ("Disabled", False))
        calls = {"Encrypt": lambda: self.kms.encrypt(KeyId="alias/retired", Plaintext=b"x"),
                 "GenerateDataKey": lambda: self.kms.generate_data_key(KeyId="alias/retired", KeySpec="AES_256"),
                 "GenerateDataKeyWithoutPlaintext":
                     lambda: self.kms.generate_data_key_without_plaintext(KeyId="alias/retired", KeySpec="AES_256"),
                 "Decrypt": lambda: self.kms.decrypt(CiphertextBlob=blob),
                 "ReEncrypt": lambda: self.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId="alias/demo")}
        answers = {}
        for name, call in calls.items():
            with self.assertRaises(self.kms.exceptions.ClientError) as c:
                call()
            answers[name] = (c.exception.response["Error"]["Code"],
                             c.exception.response["ResponseMetadata"]["HTTPStatusCode"])
        self.assertEqual(answers, {name: ("DisabledException", 400) for name in calls})


if __name__ == "__main__":
    unittest.main()
