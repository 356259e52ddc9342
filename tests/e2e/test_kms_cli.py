"""The AWS KMS-compatible API through the AWS CLI (issue 6, DESIGN §8): /usr/bin/aws from Debian,
pointed at kekd with --endpoint-url and a kekd client id and secret as its access key, does what
it does against AWS KMS, with the answers AWS KMS gives.

Each CLI run costs about a second of Python start-up, so every run checks as much as it can.
"""
import datetime
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kms_e2e import ACCOUNT, ALL, REGION, alias_arn, aws_env, key_arn, unb64  # noqa: E402
from kekd_e2e import Deployment, E2ETest  # noqa: E402

AWS = "/usr/bin/aws"
CONTEXT = {"tenant": "acme", "purpose": "card"}
KEYS = ("demo", "other", "third")  # name order, which is kekd's listing order


class KmsCli(E2ETest):
    @classmethod
    def setUpClass(cls):
        cls.d = Deployment().start()
        try:
            for name in KEYS:
                cls.d.ceremony("create-key", name)
            cls.token = cls.d.client([{"key": "*", "operations": ALL}])
            cls.ids = {name: cls.d.admin("GET", f"/v1/keys/{name}").json()["id"] for name in KEYS}
        except BaseException:
            cls.d.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def file(self, name, data):
        path = os.path.join(self.d.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def aws(self, *args, ok=True, token=None, region=REGION):
        """Runs `aws kms ARGS` against kekd; returns the parsed JSON output (or, unless ok, the
        finished process)."""
        result = subprocess.run([AWS, "--endpoint-url", self.d.addr, "--output", "json", "kms", *args],
                                env=aws_env(token or self.token, region), capture_output=True, text=True,
                                timeout=60)
        if not ok:
            return result
        self.assertEqual(result.returncode, 0, f"aws kms {args}:\n{result.stdout}\n{result.stderr}")
        self.assertEqual(result.stderr, "")
        return json.loads(result.stdout)

    def unwrap_natively(self, ciphertext_b64, context=None):
        body = {"ciphertext": ciphertext_b64}
        if context is not None:
            body["context"] = context
        r = self.d.request("POST", "/v1/keys/demo/unwrap", body=body, token=self.token)
        self.assertEqual(r.status, 200, r.body)
        return unb64(r.json()["plaintext"])

    def test_encrypt_decrypt_and_re_encrypt(self):
        secret = os.urandom(48)
        out = self.aws("encrypt", "--key-id", "alias/demo", "--plaintext", "fileb://" + self.file("pt", secret),
                       "--encryption-context", json.dumps(CONTEXT))
        self.assertEqual(set(out), {"CiphertextBlob", "KeyId", "EncryptionAlgorithm"})
        self.assertEqual(out["KeyId"], key_arn(self.ids["demo"]))
        self.assertEqual(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        blob = unb64(out["CiphertextBlob"])
        self.assertEqual(blob[:10], b"\x01\x04demo\x00\x00\x00\x01")  # DESIGN §4: kekd's own ciphertext
        self.assertEqual(self.unwrap_natively(out["CiphertextBlob"], CONTEXT), secret)
        blob_file = self.file("ct", blob)

        out = self.aws("decrypt", "--ciphertext-blob", "fileb://" + blob_file,
                       "--encryption-context", json.dumps(CONTEXT))
        self.assertEqual(out, {"KeyId": key_arn(self.ids["demo"]), "Plaintext": out["Plaintext"],
                               "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        self.assertEqual(unb64(out["Plaintext"]), secret)

        # Another context is refused, with AWS's error type; the CLI says so and fails.
        wrong = self.aws("decrypt", "--ciphertext-blob", "fileb://" + blob_file,
                         "--encryption-context", "tenant=acme", ok=False)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertIn("An error occurred (InvalidCiphertextException) when calling the Decrypt operation",
                      wrong.stderr)
        self.assertEqual(wrong.stdout, "")

        # Same key, the context changed: the new blob opens only under the new context.
        new_context = {"tenant": "acme", "purpose": "archive"}
        same = self.aws("re-encrypt", "--ciphertext-blob", "fileb://" + blob_file,
                        "--source-encryption-context", json.dumps(CONTEXT),
                        "--destination-key-id", self.ids["demo"],
                        "--destination-encryption-context", json.dumps(new_context))
        self.assertEqual(same, {"CiphertextBlob": same["CiphertextBlob"],
                                "SourceKeyId": key_arn(self.ids["demo"]), "KeyId": key_arn(self.ids["demo"]),
                                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
        self.assertNotIn("Plaintext", same)
        self.assertEqual(self.unwrap_natively(same["CiphertextBlob"], new_context), secret)
        r = self.d.request("POST", "/v1/keys/demo/unwrap", token=self.token,
                           body={"ciphertext": same["CiphertextBlob"], "context": CONTEXT})
        self.assertError(r, 400, "invalid_ciphertext")

        # To another key (by its alias ARN), the context dropped; then back through decrypt.
        moved = self.aws("re-encrypt", "--ciphertext-blob", same["CiphertextBlob"],
                         "--source-encryption-context", json.dumps(new_context),
                         "--destination-key-id", alias_arn("other"))
        self.assertEqual(moved["SourceKeyId"], key_arn(self.ids["demo"]))
        self.assertEqual(moved["KeyId"], key_arn(self.ids["other"]))
        self.assertEqual(unb64(moved["CiphertextBlob"])[:11], b"\x01\x05other\x00\x00\x00\x01")
        out = self.aws("decrypt", "--ciphertext-blob", moved["CiphertextBlob"], "--key-id", "alias/other")
        self.assertEqual((out["KeyId"], unb64(out["Plaintext"])), (key_arn(self.ids["other"]), secret))

    def test_data_keys_and_random(self):
        dk = self.aws("generate-data-key", "--key-id", "alias/demo", "--key-spec", "AES_256",
                      "--encryption-context", json.dumps(CONTEXT))
        self.assertEqual(set(dk), {"CiphertextBlob", "Plaintext", "KeyId"})
        self.assertEqual(dk["KeyId"], key_arn(self.ids["demo"]))
        self.assertEqual(len(unb64(dk["Plaintext"])), 32)
        back = self.aws("decrypt", "--ciphertext-blob", dk["CiphertextBlob"],
                        "--encryption-context", json.dumps(CONTEXT))
        self.assertEqual(back["Plaintext"], dk["Plaintext"])

        dk48 = self.aws("generate-data-key", "--key-id", key_arn(self.ids["demo"]), "--number-of-bytes", "48")
        self.assertEqual(len(unb64(dk48["Plaintext"])), 48)
        self.assertEqual(dk48["KeyId"], key_arn(self.ids["demo"]))
        self.assertEqual(self.unwrap_natively(dk48["CiphertextBlob"]), unb64(dk48["Plaintext"]))
        self.assertNotEqual(dk48["Plaintext"][:40], dk["Plaintext"][:40])

        hidden = self.aws("generate-data-key-without-plaintext", "--key-id", "alias/demo", "--key-spec", "AES_128")
        self.assertEqual(hidden, {"CiphertextBlob": hidden["CiphertextBlob"], "KeyId": key_arn(self.ids["demo"])})
        back = self.aws("decrypt", "--ciphertext-blob", hidden["CiphertextBlob"])
        self.assertEqual(len(unb64(back["Plaintext"])), 16)
        self.assertEqual(back["KeyId"], key_arn(self.ids["demo"]))

        random = self.aws("generate-random", "--number-of-bytes", "64")
        self.assertEqual(list(random), ["Plaintext"])
        self.assertEqual(len(unb64(random["Plaintext"])), 64)
        self.assertNotEqual(unb64(random["Plaintext"]), bytes(64))

    def test_describe_key_by_every_kind_of_key_id(self):
        uuid = self.ids["demo"]
        native = self.d.admin("GET", "/v1/keys/demo").json()
        created = datetime.datetime.strptime(native["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        for key_id in ("alias/demo", uuid, key_arn(uuid), alias_arn("demo")):
            metadata = self.aws("describe-key", "--key-id", key_id)["KeyMetadata"]
            creation = datetime.datetime.fromisoformat(metadata.pop("CreationDate"))
            self.assertLess(abs((creation - created).total_seconds()), 1.0, key_id)
            self.assertEqual(metadata, {
                "AWSAccountId": ACCOUNT, "KeyId": uuid, "Arn": key_arn(uuid), "Enabled": True,
                "Description": "kekd key 'demo'", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled",
                "Origin": "AWS_KMS", "KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
                "MultiRegion": False}, key_id)
        self.assertEqual(key_arn(uuid), f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid}")

    def test_refusals_reach_the_cli_as_aws_errors(self):
        other_region = self.aws("describe-key", "--key-id", "alias/demo", region="eu-west-1", ok=False)
        self.assertEqual(other_region.stdout, "")
        # (with AWS_MAX_ATTEMPTS=1 the CLI adds "reached max retries: 0" to every error it reports)
        self.assertRegex(other_region.stderr, r"An error occurred \(InvalidSignatureException\) when calling the "
                         r"DescribeKey operation( \(reached max retries: 0\))?: Credential should be scoped to a "
                         r"valid region, not 'eu-west-1'")
        no_grant = self.d.client([{"key": "other", "operations": ALL}])
        denied = self.aws("generate-data-key", "--key-id", "alias/demo", "--key-spec", "AES_256", token=no_grant,
                          ok=False)
        self.assertEqual(denied.stdout, "")
        self.assertIn("An error occurred (AccessDeniedException) when calling the GenerateDataKey operation",
                      denied.stderr)
        for result in (other_region, denied):
            self.assertEqual(result.returncode, 254, result.stderr)

    def test_list_keys_follows_the_markers_and_list_aliases(self):
        def list_keys_requests():
            return self.d.read_log().count("route=/ ListKeys ")

        before = list_keys_requests()
        out = self.aws("list-keys", "--page-size", "1")
        self.assertEqual(out["Keys"], [{"KeyId": self.ids[n], "KeyArn": key_arn(self.ids[n])} for n in KEYS])
        self.assertNotIn("NextMarker", out)
        # one request per key, the last one answered Truncated: false
        self.assertEqual(list_keys_requests() - before, 3)

        aliases = self.aws("list-aliases")["Aliases"]
        for a in aliases:
            created = a.pop("CreationDate")
            self.assertEqual(a.pop("LastUpdatedDate"), created)
            datetime.datetime.fromisoformat(created)
        self.assertEqual(aliases, [{"AliasName": f"alias/{n}", "AliasArn": alias_arn(n),
                                    "TargetKeyId": self.ids[n]} for n in KEYS])


if __name__ == "__main__":
    unittest.main()
