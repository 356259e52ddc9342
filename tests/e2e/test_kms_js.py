"""The AWS KMS API through AWS's JavaScript clients: the AWS SDK for JavaScript v3
(@aws-sdk/client-kms) encrypts and decrypts, and the AWS Encryption SDK for JavaScript
(@aws-crypto/client-node) encrypts and decrypts a message with a KMS keyring whose key is a kekd
key ARN, with an encryption context. Both are installed from npm as tests/kms-js/package-lock.json
pins them (scripts/kms-js-setup.sh); tests/kms-js/kms_check.mjs makes the calls, and what it made
is opened here through the native API too."""
import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, SOURCE_DIR, run  # noqa: E402

SETUP = os.path.join(SOURCE_DIR, "scripts", "kms-js-setup.sh")
CHECK = os.path.join(SOURCE_DIR, "tests", "kms-js", "kms_check.mjs")
GRANTS = ["wrap", "unwrap", "datakey", "describe"]


class KmsJavaScriptClients(E2ETest):
    @classmethod
    def setUpClass(cls):
        # npm first: a missing node or npm, or a failed install, fails the test (never a skip).
        # (run() allows 120 s; a first install on a slow network may need more.)
        started = time.time()
        out = subprocess.run(["bash", SETUP], capture_output=True, text=True, timeout=450)
        if out.returncode != 0:
            raise AssertionError(f"{SETUP} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        sys.stderr.write(out.stdout + out.stderr + f"kms-js-setup took {time.time() - started:.1f}s\n")
        from kekd_e2e import Deployment
        cls.d = Deployment().start()
        cls.d.ceremony("create-key", "jsdemo")
        cls.key_id = cls.d.admin("GET", "/v1/keys/jsdemo").json()["id"]
        cls.arn = f"arn:aws:kms:us-east-1:000000000000:key/{cls.key_id}"
        cls.token = cls.d.client([{"key": "jsdemo", "operations": GRANTS}])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def node(self, token=None):
        access_key, secret = (token or self.token).split(".", 1)
        env = {k: v for k, v in self.d.env.items() if not k.startswith("AWS_")}
        env.update(KEKD_ADDR=self.d.addr, KEKD_KEY_ARN=self.arn, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret,
                   # nothing from the user's AWS configuration, and no instance metadata lookups
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   AWS_EC2_METADATA_DISABLED="true")
        return run(["node", CHECK], env=env, check=False)

    def summary(self, result):
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        self.assertTrue(lines, f"no summary line:\n{result.stdout}\n{result.stderr}")
        return json.loads(lines[-1])

    def unwrap(self, ciphertext_b64, context):
        return self.d.request("POST", "/v1/keys/jsdemo/unwrap", body={"ciphertext": ciphertext_b64, "context": context},
                              token=self.token)

    def test_sdk_and_encryption_sdk_round_trip_and_open_natively(self):
        result = self.node()
        self.assertEqual(result.returncode, 0, f"{result.stdout}\n{result.stderr}\n{self.d.read_log()[-4000:]}")
        summary = self.summary(result)
        self.assertTrue(summary["ok"], summary)
        sys.stderr.write(f"kms_check: node {summary['node']}, {len(summary['checks'])} checks passed\n")
        self.assertEqual(summary["versions"], {"@aws-sdk/client-kms": "3.967.0", "@aws-crypto/client-node": "5.0.2"})
        for name in ("sdk Decrypt under the wrong context is InvalidCiphertextException",
                     "esdk decrypt returns the message", "esdk decrypted header holds tenant=acme",
                     "esdk decrypt with a keyring for another key fails",
                     "esdk encrypt with a key kekd does not have fails with NotFoundException"):
            self.assertIn(name, summary["checks"])

        # The SDK's Encrypt and GenerateDataKey ciphertexts open through the native API under the
        # same context, and only under it.
        sdk = summary["sdk"]
        self.assertEqual(sdk["context"], {"purpose": "e2e", "tenant": "acme"})
        opened = self.unwrap(sdk["ciphertext"], sdk["context"])
        self.assertEqual(opened.status, 200, opened.body)
        self.assertEqual(opened.json()["plaintext"], sdk["plaintext"])
        self.assertEqual(opened.json()["key"], "jsdemo")
        opened = self.unwrap(sdk["datakey_ciphertext"], sdk["context"])
        self.assertEqual(opened.status, 200, opened.body)
        self.assertEqual(opened.json()["plaintext"], sdk["datakey_plaintext"])
        self.assertEqual(len(base64.b64decode(opened.json()["plaintext"])), 32)
        self.assertError(self.unwrap(sdk["ciphertext"], {"purpose": "e2e"}), 400, "invalid_ciphertext")

        # The Encryption SDK's data key, as kekd wrapped it for the message, is bound to the
        # message's whole encryption context (the caller's pairs and the signing suite's public key).
        esdk = summary["esdk"]
        self.assertEqual({k: esdk["context"][k] for k in ("purpose", "tenant")}, {"purpose": "e2e", "tenant": "acme"})
        self.assertIn("aws-crypto-public-key", esdk["context"])
        opened = self.unwrap(esdk["edk_ciphertext"], esdk["context"])
        self.assertEqual(opened.status, 200, opened.body)
        self.assertEqual(len(base64.b64decode(opened.json()["plaintext"])), 32)
        self.assertError(self.unwrap(esdk["edk_ciphertext"], sdk["context"]), 400, "invalid_ciphertext")

    def test_a_wrong_secret_fails_loudly(self):
        client_id = self.token.split(".", 1)[0]
        result = self.node(token=client_id + ".wrong-secret")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        summary = self.summary(result)
        self.assertFalse(summary["ok"])
        self.assertEqual(summary["checks"], [])
        # as AWS answers a known access key id with the wrong secret
        self.assertIn("InvalidSignatureException", result.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
