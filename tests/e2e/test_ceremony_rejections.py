"""Every rejected approval or proposal gets a clear JSON error and changes nothing."""
import base64
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


def b64(path):
    """The signature file sign.sh wrote (base64 text, one line)."""
    with open(path) as f:
        text = f.read().strip()
    base64.b64decode(text, validate=True)
    return text


class CeremonyRejections(E2ETest):
    def setUp(self):
        self.d = self.deployment(ttl="8s").start()
        self.id = self.d.script("propose.sh", "create-key", "demo").stdout.strip()
        self.statement = self.d.statement(self.id)

    def approve(self, ceremony_id, operator, signature_b64):
        return self.d.request("POST", f"/v1/ceremonies/{ceremony_id}/approvals",
                              body={"operator": operator, "signature": signature_b64})

    def unchanged(self, before):
        after = self.d.admin("GET", f"/v1/ceremonies/{self.id}").json()
        self.assertEqual(before["approvals"], after["approvals"])
        self.assertEqual(before["state"], after["state"])
        self.assertEqual(self.d.admin("GET", "/v1/keys").json()["keys"], [])

    def snapshot(self):
        return self.d.admin("GET", f"/v1/ceremonies/{self.id}").json()

    def test_signature_by_non_operator_is_rejected(self):
        before = self.snapshot()
        key, _ = self.d.make_operator_key("mallory")
        sig = b64(self.d.sign(self.statement, "mallory", key=key))
        self.assertError(self.approve(self.id, "mallory", sig), 400, "unknown_operator")
        # An operator's name with someone else's signature is a bad signature.
        self.assertError(self.approve(self.id, "alice", sig), 400, "signature_rejected")
        self.unchanged(before)

    def test_second_approval_by_same_operator_is_rejected(self):
        sig = b64(self.d.sign(self.statement, "alice"))
        self.assertEqual(self.approve(self.id, "alice", sig).status, 200)
        before = self.snapshot()
        self.assertError(self.approve(self.id, "alice", sig), 409, "duplicate_approval")
        self.unchanged(before)

    def test_signature_from_another_ceremony_is_rejected(self):
        other = self.d.script("propose.sh", "create-key", "other").stdout.strip()
        other_sig = b64(self.d.sign(self.d.statement(other), "alice"))
        before = self.snapshot()
        self.assertError(self.approve(self.id, "alice", other_sig), 400, "signature_rejected")
        self.unchanged(before)

    def test_signature_over_statement_with_one_byte_changed_is_rejected(self):
        with open(self.statement, "rb") as f:
            data = bytearray(f.read())
        data[-2] ^= 0x01
        altered = self.statement + ".altered"
        with open(altered, "wb") as f:
            f.write(data)
        # sign.sh would refuse a malformed statement; plain openssl signs anything.
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.d.operator_keys["bob"][0],
                              "-rawin", "-in", altered], capture_output=True, check=True).stdout
        before = self.snapshot()
        self.assertError(self.approve(self.id, "bob", base64.b64encode(sig).decode()), 400,
                         "signature_rejected")
        self.unchanged(before)

    def test_malformed_signatures_are_rejected(self):
        before = self.snapshot()
        for bad in ["", "not base64!", base64.b64encode(b"\x00" * 64).decode(), base64.b64encode(b"x").decode()]:
            response = self.approve(self.id, "alice", bad)
            self.assertEqual(response.status, 400, (bad, response.body))
            self.assertIn(response.json()["error"]["code"], ("invalid_argument", "signature_rejected"))
        self.assertError(self.d.request("POST", f"/v1/ceremonies/{self.id}/approvals", raw=b"{"), 400,
                         "invalid_argument")
        self.assertError(self.d.request("POST", f"/v1/ceremonies/{self.id}/approvals",
                                        body={"operator": "alice", "signature": "AA==", "extra": 1}),
                         400, "invalid_argument")
        self.unchanged(before)

    def test_approval_on_cancelled_ceremony_is_rejected(self):
        self.assertEqual(self.d.admin("POST", f"/v1/ceremonies/{self.id}/cancel").status, 200)
        before = self.snapshot()
        self.assertEqual(before["state"], "cancelled")
        self.assertError(self.approve(self.id, "alice", b64(self.d.sign(self.statement, "alice"))), 409,
                         "failed_precondition")
        self.unchanged(before)

    def test_approval_on_expired_ceremony_is_rejected(self):
        sig = b64(self.d.sign(self.statement, "alice"))
        time.sleep(9)  # ttl is 8s in this deployment: long enough for the other tests on a busy machine
        self.assertError(self.approve(self.id, "alice", sig), 409, "failed_precondition")
        self.assertEqual(self.snapshot()["state"], "expired")
        self.assertEqual(self.snapshot()["approvals"], [])

    def test_proposal_without_admin_credentials_is_rejected(self):
        self.assertError(self.d.request("POST", "/v1/ceremonies", body={"action": "create-key", "key": "x"}),
                         401, "unauthenticated")
        self.assertError(self.d.request("POST", "/v1/ceremonies", body={"action": "create-key", "key": "x"},
                                        token="adm_00.wrong"), 401, "unauthenticated")
        self.assertEqual(len(self.d.admin("GET", "/v1/ceremonies").json()["ceremonies"]), 1)

    def test_second_open_ceremony_for_same_key_is_rejected(self):
        self.assertError(self.d.admin("POST", "/v1/ceremonies", {"action": "create-key", "key": "demo"}), 409,
                         "failed_precondition")
        self.assertEqual(len(self.d.admin("GET", "/v1/ceremonies").json()["ceremonies"]), 1)

    def test_unknown_action_is_rejected(self):
        self.assertError(self.d.admin("POST", "/v1/ceremonies", {"action": "export-key", "key": "demo2"}), 400,
                         "invalid_argument")
        self.assertError(self.d.admin("POST", "/v1/ceremonies", {"action": "create-key", "key": "Bad Name"}), 400,
                         "invalid_argument")
        self.assertEqual(len(self.d.admin("GET", "/v1/ceremonies").json()["ceremonies"]), 1)


if __name__ == "__main__":
    unittest.main()
