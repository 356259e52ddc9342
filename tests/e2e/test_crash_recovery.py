"""kill -9 between the HSM call and the store commit of an execution, then restart: the ceremony
is reported executed and the key version exists, exactly once."""
import base64
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from kekd_e2e import E2ETest  # noqa: E402


class CrashDuringExecution(E2ETest):
    def run_to_crash(self, d, action, key):
        ceremony_id = d.script("propose.sh", action, key).stdout.strip()
        statement = d.statement(ceremony_id)
        d.script("approve.sh", ceremony_id, "alice", d.sign(statement, "alice"))
        sig = d.sign(statement, "bob")
        with open(sig) as f:
            signature = f.read().strip()
        try:
            d.request("POST", f"/v1/ceremonies/{ceremony_id}/approvals",
                      body={"operator": "bob", "signature": signature})
        except OSError:
            pass  # the connection dies with the process: this approval was never acknowledged
        d.proc.wait(timeout=10)
        self.assertEqual(d.proc.returncode, -9, d.read_log())
        d.proc = None
        d.log.close()
        return ceremony_id

    def test_create_key_completes_exactly_once_after_kill(self):
        d = self.deployment()
        d.start(env_extra={"KEKD_FAULT_POINT": "keyring.after_generate_kek"})
        ceremony_id = self.run_to_crash(d, "create-key", "demo")
        # The KEK is in the token, the store does not know it yet.
        self.assertEqual(d.token_labels().count("kekd:demo:1"), 1)

        d.start()
        ceremony = d.admin("GET", f"/v1/ceremonies/{ceremony_id}").json()
        self.assertEqual(ceremony["state"], "executed", ceremony)
        key = d.admin("GET", "/v1/keys/demo").json()
        self.assertEqual([v["version"] for v in key["versions"]], [1])
        self.assertEqual(key["versions"][0]["ceremony_id"], ceremony_id)
        labels = d.token_labels()
        self.assertEqual(labels.count("kekd:demo:"), 1, labels)

        # And once more: a second restart changes nothing.
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual([v["version"] for v in d.admin("GET", "/v1/keys/demo").json()["versions"]], [1])
        self.assertEqual(d.token_labels().count("kekd:demo:"), 1)

    def test_rotate_key_completes_exactly_once_after_kill(self):
        d = self.deployment().start()
        create = d.script("propose.sh", "create-key", "demo").stdout.strip()
        statement = d.statement(create)
        for name in ("alice", "bob"):
            d.script("approve.sh", create, name, d.sign(statement, name))
        self.assertEqual(d.stop(), 0)

        d.start(env_extra={"KEKD_FAULT_POINT": "keyring.after_generate_kek"})
        ceremony_id = self.run_to_crash(d, "rotate-key", "demo")
        d.start()
        self.assertEqual(d.admin("GET", f"/v1/ceremonies/{ceremony_id}").json()["state"], "executed")
        key = d.admin("GET", "/v1/keys/demo").json()
        self.assertEqual([v["version"] for v in key["versions"]], [1, 2])
        self.assertEqual(key["primary_version"], 2)
        labels = d.token_labels()
        self.assertEqual(labels.count("kekd:demo:2"), 1, labels)
        self.assertEqual(labels.count("kekd:demo:"), 2, labels)


if __name__ == "__main__":
    unittest.main()
