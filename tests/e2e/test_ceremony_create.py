"""A 2-of-3 create-key ceremony driven only through scripts/ceremony/, keys made by openssl."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


class CreateKeyCeremony(E2ETest):
    def test_key_exists_only_after_the_second_approval(self):
        d = self.deployment().start()
        ceremony_id = d.script("propose.sh", "create-key", "demo").stdout.strip()
        self.assertRegex(ceremony_id, r"^[0-9a-f]{32}$")

        statement = d.statement(ceremony_id)
        with open(statement) as f:
            text = f.read()
        self.assertTrue(text.startswith("kekd ceremony v1\nid: " + ceremony_id + "\naction: create-key\nkey: demo\n"))

        d.script("approve.sh", ceremony_id, "alice", d.sign(statement, "alice"))
        self.assertEqual(d.admin("GET", "/v1/keys/demo").status, 404)
        self.assertNotIn("kekd:demo:1", d.token_labels())
        ceremony = d.admin("GET", f"/v1/ceremonies/{ceremony_id}").json()
        self.assertEqual(ceremony["state"], "open")
        self.assertEqual([a["operator"] for a in ceremony["approvals"]], ["alice"])

        d.script("approve.sh", ceremony_id, "carol", d.sign(statement, "carol"))
        ceremony = d.admin("GET", f"/v1/ceremonies/{ceremony_id}").json()
        self.assertEqual(ceremony["state"], "executed", ceremony)
        key = d.admin("GET", "/v1/keys/demo").json()
        self.assertEqual(key["primary_version"], 1)
        self.assertEqual(key["versions"][0]["state"], "enabled")
        self.assertEqual(key["versions"][0]["ceremony_id"], ceremony_id)

        # The KEK in the token, checked by an independent tool.
        check = d.check_kek("kekd:demo:1")
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        status = d.script("status.sh", ceremony_id).stdout
        self.assertIn("executed", status)


if __name__ == "__main__":
    unittest.main()
