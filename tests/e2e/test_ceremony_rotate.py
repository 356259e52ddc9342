"""Rotation by 3 of 5 mixed Ed25519/ECDSA operators, and replacing the operator set."""
import base64
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest, PKCS11_HELPER, SOFTHSM, run  # noqa: E402

OPERATORS = ("alice", "bob", "carol", "dave", "erin")


class Rotation(E2ETest):
    def ceremony(self, d, approvers, *propose_args):
        ceremony_id = d.script("propose.sh", *propose_args).stdout.strip()
        statement = d.statement(ceremony_id)
        for name in approvers:
            d.script("approve.sh", ceremony_id, name, d.sign(statement, name))
        return ceremony_id

    def helper(self, d, *args):
        return run(["/usr/bin/python3", PKCS11_HELPER, "--module", SOFTHSM, "--token-label", "kekd",
                    "--pin-file", d.pin_file, *args], env=d.env).stdout.strip()

    def test_three_of_five_mixed_rotation_keeps_old_versions_usable(self):
        d = self.deployment(operators=OPERATORS, ecdsa=("bob", "dave"), threshold=3).start()
        self.ceremony(d, ("alice", "bob", "dave"), "create-key", "payments")
        # A ciphertext under version 1, made by an independent implementation of kekd's format.
        dek = "00112233445566778899aabbccddeeff"
        ciphertext = self.helper(d, "wrap", "--label", "kekd:payments:1", "--plaintext-hex", dek,
                                 "--context-hex", "")

        ceremony_id = d.script("propose.sh", "rotate-key", "payments").stdout.strip()
        statement = d.statement(ceremony_id)
        for name in ("erin", "bob"):
            d.script("approve.sh", ceremony_id, name, d.sign(statement, name))
        self.assertEqual(d.admin("GET", "/v1/keys/payments").json()["primary_version"], 1)
        d.script("approve.sh", ceremony_id, "dave", d.sign(statement, "dave"))

        key = d.admin("GET", "/v1/keys/payments").json()
        self.assertEqual(key["primary_version"], 2)
        self.assertEqual([v["state"] for v in key["versions"]], ["enabled", "enabled"])
        labels = d.token_labels()
        self.assertIn("kekd:payments:1", labels)
        self.assertIn("kekd:payments:2", labels)
        self.assertEqual(d.check_kek("kekd:payments:2").returncode, 0)
        recovered = self.helper(d, "unwrap", "--ciphertext-b64", ciphertext, "--context-hex", "")
        self.assertIn(dek, recovered)


class SetOperators(E2ETest):
    def test_new_set_replaces_old_and_its_threshold_applies(self):
        d = self.deployment().start()  # alice, bob, carol; threshold 2
        _, dave_pub = d.make_operator_key("dave")
        _, erin_pub = d.make_operator_key("erin", ecdsa=True)
        _, alice_pub = d.operator_keys["alice"]
        ceremony_id = d.script("propose.sh", "set-operators", "--operator", f"alice={alice_pub}",
                               "--operator", f"dave={dave_pub}", "--operator", f"erin={erin_pub}",
                               "--threshold", "3").stdout.strip()
        statement = d.statement(ceremony_id)
        with open(statement) as f:
            text = f.read()
        self.assertIn("new-threshold: 3\n", text)
        for name in ("bob", "carol"):
            d.script("approve.sh", ceremony_id, name, d.sign(statement, name))
        operators = d.get("/v1/operators", token=d.admin_token).json()
        self.assertEqual(operators["threshold"], 3)
        self.assertEqual([o["name"] for o in operators["operators"]], ["alice", "dave", "erin"])

        create = d.script("propose.sh", "create-key", "demo").stdout.strip()
        create_statement = d.statement(create)
        # bob was removed: his approval is refused, and nothing changes.
        rejected = d.script("approve.sh", create, "bob", d.sign(create_statement, "bob"), check=False)
        self.assertNotEqual(rejected.returncode, 0)
        self.assertIn("unknown_operator", rejected.stdout + rejected.stderr)
        # The new threshold is 3: two approvals are not enough.
        for name in ("dave", "erin"):
            d.script("approve.sh", create, name, d.sign(create_statement, name))
        self.assertEqual(d.admin("GET", f"/v1/ceremonies/{create}").json()["state"], "open")
        self.assertEqual(d.admin("GET", "/v1/keys/demo").status, 404)
        d.script("approve.sh", create, "alice", d.sign(create_statement, "alice"))
        self.assertEqual(d.admin("GET", f"/v1/ceremonies/{create}").json()["state"], "executed")


if __name__ == "__main__":
    unittest.main()
